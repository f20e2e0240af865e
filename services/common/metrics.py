"""Prometheus metrics over HTTP for any service process.

A service builds its metrics on its own ``CollectorRegistry`` (nothing registers at import
time) and, when its ``metrics_port`` setting is non-zero, serves them with ``MetricsEndpoint``
(the llm service today).
The endpoint runs prometheus_client's small HTTP server on a daemon thread: a scrape renders
text from in-memory counters, so it never touches the event loop.
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

logger = logging.getLogger(__name__)


class MetricsEndpoint:
    """``GET /metrics`` on ``host:port`` for one registry; port 0 means off."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        self.registry = registry
        self.port = port
        self.host = host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (no-op when the port is 0)."""
        if not self.port or self._server is not None:
            return
        self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        """Stop serving and wait briefly for the server thread (no-op when not started)."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None
