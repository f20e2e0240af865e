"""Reindex progress as Prometheus gauges on the index service's registry.

They show the latest job as the database has it (whichever worker or process runs it), refreshed
by every index replica's watch for orphaned jobs and by each status read. No job id is a label:
the status label takes one of the job statuses, a closed set.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from services.index.reindex.store import ACTIVE, STATUSES, Job


class ReindexGauges:
    """The latest job's progress and status."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry or CollectorRegistry()
        self.processed = Gauge(
            "agents_index_reindex_processed_rows", "Posts the latest reindex job has read.", registry=registry
        )
        self.total = Gauge(
            "agents_index_reindex_total_rows", "Posts the latest reindex job has to read.", registry=registry
        )
        self.running = Gauge(
            "agents_index_reindex_running",
            "1 while a reindex job runs (or is being canceled), else 0.",
            registry=registry,
        )
        self.status = Gauge(
            "agents_index_reindex_status",
            "1 for the latest reindex job's status, 0 for the others.",
            ["status"],
            registry=registry,
        )
        for status in STATUSES:
            self.status.labels(status).set(0)

    def observe(self, job: Job | None) -> None:
        """Show ``job`` (the latest; None before the first)."""
        if job is None:
            return
        self.processed.set(job.processed_rows)
        self.total.set(job.total_rows)
        self.running.set(1 if job.status in ACTIVE else 0)
        for status in STATUSES:
            self.status.labels(status).set(1 if status == job.status else 0)
