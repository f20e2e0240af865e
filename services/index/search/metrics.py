"""The index service's search metric, on the registry its metrics endpoint serves.

``agents_search_duration_seconds{scan}``: seconds per Index.Search, from the request to the
ranked rows (embedding the query included). ``scan`` is the plan that answered (``none``,
``exact``, ``hnsw``, ``hnsw+exact``) or ``error``: a closed set, never a user or channel id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

# A search takes a few milliseconds on a small index and up to seconds when the provider is slow.
SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FAILED = "error"


class SearchMetrics:
    """The search histogram on ``registry`` (a new one when not given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.duration = Histogram(
            "agents_search_duration_seconds",
            "Seconds a semantic search took, query embedding included, by the scan that answered it.",
            ["scan"],
            buckets=SEARCH_BUCKETS,
            registry=self.registry,
        )

    def observe(self, scan: str, seconds: float) -> None:
        """Record one search answered by ``scan`` (``error`` when it failed)."""
        self.duration.labels(scan).observe(seconds)
