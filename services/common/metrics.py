"""Prometheus metrics over HTTP for any service process.

Every service builds its metrics on its own ``CollectorRegistry`` (nothing registers at import
time): ``ServiceMetrics`` holds what each one has (the plugin's start time and info, and its gRPC
server's calls); a service adds its own to the same registry. When its ``metrics_port`` setting is
non-zero, ``MetricsEndpoint`` serves them (any path answers, the plugin's
``/plugins/mattermost-ai/metrics`` and ``/metrics`` alike).
The endpoint runs prometheus_client's small HTTP server on a daemon thread: a scrape renders
text from in-memory counters, so it never touches the event loop.
Labels are names from a closed set (methods, codes, route templates): never ids, user content or
secrets, so the number of series stays bounded whatever the traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from importlib import metadata
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

PACKAGE = "mattermost-agents-cluster"
# gRPC calls run from a millisecond (a registry read) to minutes (a streamed answer).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServiceMetrics:
    """The metrics every service process exports, on ``registry`` (a new one when not given)."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        start = Gauge(
            "agents_system_plugin_start_timestamp_seconds",
            "The time the process started, in seconds since the epoch.",
            registry=self.registry,
            # Summed over workers (services/common/workers.py): the first one's start.
            multiprocess_mode="min",
        )
        start.set(time.time())
        info = Gauge(
            "agents_system_plugin_info",
            "The version of this process and the service it is (always 1).",
            ["version", "service"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        info.labels(metadata.version(PACKAGE), service).set(1)
        self.grpc_handled = Counter(
            "agents_grpc_server_handled",
            "gRPC calls this server finished, by service, method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=self.registry,
        )
        self.grpc_seconds = Histogram(
            "agents_grpc_server_handling_seconds",
            "Seconds from a gRPC call's start to its end (a stream's last message), by method and code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_grpc(self, method: str, code: str, seconds: float) -> None:
        """Record one finished call of ``method`` (``/package.Service/Method``, a registered one)."""
        service, _, name = method.lstrip("/").partition("/")
        self.grpc_handled.labels(service, name, code).inc()
        self.grpc_seconds.labels(service, name, code).observe(seconds)


class MetricsEndpoint:
    """``GET /metrics`` on ``host:port`` for one registry; port 0 means off."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        self.registry = registry
        self.port = port
        self.host = host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start serving (no-op when the port is 0). A port that cannot be bound is logged, not
        raised: the service serves its calls without metrics rather than not at all (e.g. a
        second replica started on one host with the first one's environment)."""
        if not self.port or self._server is not None:
            return
        try:
            self._server, self._thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        except OSError as err:
            logger.error("metrics not served: cannot listen on %s:%d (%s)", self.host, self.port, err.strerror)
            return
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
