"""The mcp service's Prometheus metrics, on the registry its metrics endpoint serves.

``agents_mcp_tool_call_duration_seconds{server, outcome}``: seconds per remote tool call, from the
call's start (opening the user's session included) to its result. ``server`` is the name an admin
gave the server (a closed set), ``outcome`` one of ``OUTCOMES``; no user, tool name or argument
is a label, so the series stay bounded whatever the traffic. ``timeout`` is our own per-call
deadline cutting the server; ``cancelled`` a caller that cancelled, went away or passed its own
deadline (what ``agents_grpc_server_handled`` counts as CANCELLED): neither side failed.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import CollectorRegistry, Histogram

from services.common.metrics import LATENCY_BUCKETS

Outcome = Literal["ok", "error", "timeout", "cancelled"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "timeout", "cancelled")


class McpMetrics:
    """Every metric of the mcp service's own; ``registry`` is what the metrics endpoint serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.tool_call_seconds = Histogram(
            "agents_mcp_tool_call_duration_seconds",
            "Seconds per remote MCP tool call, by server (its configured name) and outcome "
            "(ok, error, timeout, cancelled).",
            ["server", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_tool_call(self, server: str, outcome: Outcome, seconds: float) -> None:
        """Record one finished tool call on ``server``."""
        self.tool_call_seconds.labels(server, outcome).observe(seconds)
