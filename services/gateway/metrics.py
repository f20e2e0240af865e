"""The gateway's HTTP metrics, as the plugin names them: ``agents_api_time_seconds`` by route
template, method and status code, ``agents_http_requests_total`` and ``agents_http_errors_total``
(any status outside 2xx, as the plugin counts). Only the plugin's routes count, not the probes.

Labels come from closed sets: the route's template (``/post/{postid}/react``, never the path the
client sent), a known method, the status code; a request no route matches is ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpMetrics:
    """The plugin's API metrics on ``registry``, and the middleware that records them for the
    routes under ``prefix``."""

    def __init__(self, registry: CollectorRegistry, prefix: str) -> None:
        self.prefix = prefix
        self.api_time = Histogram(
            "agents_api_time_seconds",
            "Seconds to execute an API handler, by route template, method and status code.",
            ["handler", "method", "status_code"],
            registry=registry,
        )
        self.requests = Counter("agents_http_requests", "The total number of HTTP API requests.", registry=registry)
        self.errors = Counter(
            "agents_http_errors", "The total number of HTTP API requests not answered 2xx.", registry=registry
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and time each request to a plugin route (outermost: it sees the final status)."""
        if not request.path.startswith(self.prefix + "/"):
            return await handler(request)
        self.requests.inc()
        started = time.monotonic()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not 200 <= status <= 299:
                self.errors.inc()
            method = request.method if request.method in _METHODS else "other"
            self.api_time.labels(self._template(request), method, str(status)).observe(time.monotonic() - started)

    def _template(self, request: web.Request) -> str:
        """The matched route's template under the prefix, or ``unmatched``."""
        resource = request.match_info.route.resource
        if resource is None:
            return UNMATCHED
        return resource.canonical.removeprefix(self.prefix) or "/"
