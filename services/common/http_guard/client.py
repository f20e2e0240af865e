"""``GuardedHttpClient``: the one way to send a request whose URL a user, model or server chose.

Every hop (the first URL and each redirect) is checked by ``check_destination`` and sent pinned to
the addresses that passed. Redirects are never followed by aiohttp: each ``Location`` is resolved
against the current URL and checked again, up to ``policy.max_redirects``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from yarl import URL

from .destination import ResolveName, check_destination, resolve_with_system
from .policy import DestinationRefused, OutboundPolicy
from .responses import (
    GuardedResponse,
    GuardedStream,
    read_capped,
    refuse_declared_oversize,
    upstream_errors,
)
from .transport import ensure_guarded, new_guarded_session, pinned_to

logger = logging.getLogger(__name__)

RequestData = bytes | str | Mapping[str, str]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Credentials meant for one origin must not follow a redirect to another (as browsers and httpx do).
_ORIGIN_BOUND_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


class _Hop:
    """The request as it stands after the redirects followed so far."""

    def __init__(self, method: str, headers: Mapping[str, str] | None, json: Any, data: RequestData | None) -> None:
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.json = json
        self.data = data

    def redirected(self, status: int, same_origin: bool) -> None:
        # 303 always becomes GET; 301/302 turn POST into GET as every client does; 307/308 resend.
        if (status == 303 and self.method != "HEAD") or (status in (301, 302) and self.method == "POST"):
            self.method, self.json, self.data = "GET", None, None
            self.headers = {k: v for k, v in self.headers.items() if k.lower() not in _BODY_HEADERS}
        if not same_origin:
            self.headers = {k: v for k, v in self.headers.items() if k.lower() not in _ORIGIN_BOUND_HEADERS}


class GuardedHttpClient:
    """Sends requests only to destinations ``policy`` allows, pinned to the checked addresses.

    Pass ``session`` (from ``new_guarded_session(policy)``) to share a pool; otherwise the client
    builds one on first use and closes it in ``close()``. ``resolve_name`` replaces the system
    resolver (tests use it as a fake DNS server).
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        session: aiohttp.ClientSession | None = None,
        *,
        resolve_name: ResolveName = resolve_with_system,
    ) -> None:
        if session is not None:
            ensure_guarded(session, policy)
        self._policy = policy
        self._session = session
        self._owns_session = session is None
        self._resolve_name = resolve_name

    @property
    def policy(self) -> OutboundPolicy:
        """The rules every request of this client is checked against."""
        return self._policy

    async def __aenter__(self) -> GuardedHttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client built it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_guarded_session(self._policy)
        return self._session

    async def request(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: RequestData | None = None,
    ) -> GuardedResponse:
        """Send one request (following checked redirects) and read the whole body under the cap.

        Raises ``DestinationRefused`` (PermissionDenied) for a refused URL or redirect,
        ``ResponseTooLarge`` past ``max_response_bytes`` and ``UpstreamUnavailable`` for transport
        failures and for passing ``total_timeout``.
        """
        host = _display_host(url)
        hop = _Hop(method, headers, json, data)
        with upstream_errors(host):
            async with asyncio.timeout(self._policy.total_timeout):
                response = await self._follow(url, hop)
                try:
                    body = await read_capped(response, limit=self._policy.max_response_bytes, host=host)
                finally:
                    response.release()
        return GuardedResponse(status=response.status, headers=response.headers, body=body, url=str(response.url))

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: RequestData | None = None,
        max_bytes: int | None = None,
    ) -> AsyncIterator[GuardedStream]:
        """Like ``request`` but yields the response to read incrementally (SSE, streamable HTTP).

        Reaching the response (checks, redirects, headers) is bounded by ``total_timeout``; reading
        is bounded by ``read_timeout`` between reads and by ``max_bytes`` (default
        ``max_response_bytes``) in total. The connection is closed when the block exits.
        """
        host = _display_host(url)
        limit = max_bytes if max_bytes is not None else self._policy.max_response_bytes
        with upstream_errors(host):
            async with asyncio.timeout(self._policy.total_timeout):
                response = await self._follow(url, _Hop(method, headers, json, data))
        try:
            refuse_declared_oversize(response, limit)
            yield GuardedStream(response, limit=limit, host=host)
        finally:
            response.close()

    async def _follow(self, url: str | URL, hop: _Hop) -> aiohttp.ClientResponse:
        session = self._client_session()
        current: str | URL = url
        redirects = 0
        while True:
            destination = await check_destination(current, self._policy, self._resolve_name)
            with pinned_to(destination):
                response = await session.request(
                    hop.method,
                    destination.url,
                    headers=hop.headers,
                    json=hop.json,
                    data=hop.data,
                    allow_redirects=False,
                )
            location = response.headers.get("Location")
            if response.status not in _REDIRECT_STATUSES or not location:
                return response
            # The redirect body is never needed; closing drops it without reading it.
            response.close()
            if redirects >= self._policy.max_redirects:
                raise DestinationRefused(f"more than {self._policy.max_redirects} redirects")
            redirects += 1
            try:
                target = destination.url.join(URL(location))
            except (ValueError, TypeError) as exc:
                raise DestinationRefused("a redirect location is malformed") from exc
            hop.redirected(response.status, _origin(target) == _origin(destination.url))
            logger.debug("following redirect %d from %s to %s", redirects, destination.host, target.host)
            current = target


def _display_host(url: str | URL) -> str:
    """The host to name in errors and logs; the full URL may carry tokens in its query."""
    try:
        return (url if isinstance(url, URL) else URL(url)).host or "the upstream"
    except (ValueError, TypeError):
        return "the upstream"
