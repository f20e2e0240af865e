"""Reads and writes of ``index_reindex_jobs``: the latest job is the one that counts. Lease times
come from the database clock, so index replicas with skewed clocks agree on when a worker is gone
(the pattern of the llm service's post claims)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import AlreadyExists, Conflict, FailedPrecondition, NotFound

_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
_COLUMNS = (
    "id, status, error, started_at, completed_at, processed_rows, total_rows, error_count, node_id, cutoff_at, "
    "last_updated_at, lease_until, cursor_channel, cursor_before, since_at"
)
_LATEST = f"SELECT {_COLUMNS}, {_NOW} AS now FROM index_reindex_jobs ORDER BY started_at DESC, id LIMIT 1"
ACTIVE = ("running", "cancel_requested")
STATUSES = (*ACTIVE, "completed", "failed", "canceled")


@dataclass(frozen=True)
class Job:
    """One reindex job as stored, and the database's clock when it was read."""

    id: str
    status: str
    error: str
    started_at: int
    completed_at: int
    processed_rows: int
    total_rows: int
    error_count: int
    node_id: str
    cutoff_at: int
    last_updated_at: int
    lease_until: int
    cursor_channel: str
    cursor_before: str
    since_at: int
    now: int

    @property
    def is_stale(self) -> bool:
        """Running (or cancel_requested) although its worker stopped renewing the lease."""
        return self.status in ACTIVE and self.lease_until < self.now


def _job(row: Any) -> Job:
    return Job(**dict(row._mapping))


class Superseded(Conflict):
    """The job is no longer this worker's (another took over its expired lease, or it ended)."""


class JobStore:
    """The job queries; ``runner.py`` is their only user."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def latest(self) -> Job | None:
        """The newest job, None when there has never been one."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(_LATEST))).first()
        return _job(row) if row else None

    async def start(self, node: str, lease_ms: int, *, resume: bool, catch_up_overlap_ms: int = -1) -> tuple[Job, bool]:
        """Start a job for ``node`` (resuming the latest failed or orphaned one with ``resume``);
        the job and whether it is new. AlreadyExists while a live worker runs one.

        With ``catch_up_overlap_ms`` (0 or more) the job is a catch-up: it reads the posts created
        since the last completed job started, less that overlap; FailedPrecondition without one."""
        async with self.engine.begin() as conn:
            await conn.execute(text("LOCK TABLE index_reindex_jobs IN EXCLUSIVE MODE"))
            latest = (await conn.execute(text(_LATEST))).first()
            job = _job(latest) if latest else None
            if job is not None and job.status in ACTIVE and not job.is_stale:
                raise AlreadyExists(f"reindex job {job.id} is {job.status} on {job.node_id or 'a worker'}")
            if resume and job is not None and (job.status == "failed" or job.is_stale):
                row = await _claim(conn, job.id, node, lease_ms)
                return _job(row), False
            since = 0
            if catch_up_overlap_ms >= 0:
                last = (
                    await conn.execute(
                        text(
                            "SELECT cutoff_at FROM index_reindex_jobs WHERE status = 'completed' "
                            "ORDER BY started_at DESC LIMIT 1"
                        )
                    )
                ).first()
                if last is None:
                    raise FailedPrecondition("nothing to catch up on: no reindex has completed")
                since = max(last.cutoff_at - catch_up_overlap_ms, 1)
            params = {"id": secrets.token_hex(13), "node": node, "lease": lease_ms, "since": since}
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO index_reindex_jobs (id, status, started_at, node_id, cutoff_at, last_updated_at, "
                        f"lease_until, since_at) VALUES (:id, 'running', {_NOW}, :node, {_NOW}, {_NOW}, "
                        f"{_NOW} + :lease, :since) RETURNING {_COLUMNS}, {_NOW} AS now"
                    ),
                    params,
                )
            ).one()
            return _job(row), True

    async def claim_orphan(self, node: str, lease_ms: int) -> Job | None:
        """Take over the latest job when its worker's lease ran out; None when there is none. A
        job of ``node`` itself is left alone: this process still runs it, only slower than its lease."""
        async with self.engine.begin() as conn:
            latest = (await conn.execute(text(_LATEST + " FOR UPDATE"))).first()
            if latest is None or not _job(latest).is_stale or latest.node_id == node:
                return None
            return _job(await _claim(conn, latest.id, node, lease_ms))

    async def set_total(self, job_id: str, node: str, total: int) -> None:
        """Record how many posts the job has to handle."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE index_reindex_jobs SET total_rows = :t WHERE id = :id AND node_id = :node"),
                {"t": total, "id": job_id, "node": node},
            )

    async def advance(
        self, conn: AsyncConnection, job_id: str, node: str, cursor: tuple[str, str], handled: int, lease_ms: int
    ) -> str:
        """In the transaction that stored a page: move the cursor past it, count its posts and
        renew the lease. The job's status (``cancel_requested`` asks the worker to stop);
        Superseded when the job is no longer this worker's."""
        row = (
            await conn.execute(
                text(
                    "UPDATE index_reindex_jobs SET cursor_channel = :c, cursor_before = :b, "
                    f"processed_rows = processed_rows + :n, last_updated_at = {_NOW}, lease_until = {_NOW} + :lease "
                    "WHERE id = :id AND node_id = :node AND status IN ('running', 'cancel_requested') RETURNING status"
                ),
                {"c": cursor[0], "b": cursor[1], "n": handled, "lease": lease_ms, "id": job_id, "node": node},
            )
        ).first()
        if row is None:
            raise Superseded(f"reindex job {job_id} is no longer run by {node}")
        return str(row.status)

    async def finish(self, job_id: str, node: str, status: str, error: str = "") -> None:
        """End the job as ``status`` (a failure counts, keeps the cursor and can be resumed)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"UPDATE index_reindex_jobs SET status = :s, error = :e, completed_at = {_NOW}, "
                    f"last_updated_at = {_NOW}, lease_until = 0, "
                    "error_count = error_count + CASE WHEN :s = 'failed' THEN 1 ELSE 0 END "
                    "WHERE id = :id AND node_id = :node"
                ),
                {"s": status, "e": error, "id": job_id, "node": node},
            )

    async def request_cancel(self) -> Job:
        """Ask the running job to stop; NotFound without any job, FailedPrecondition when none runs."""
        async with self.engine.begin() as conn:
            latest = (await conn.execute(text(_LATEST + " FOR UPDATE"))).first()
            if latest is None:
                raise NotFound("no reindex job has run")
            if latest.status not in ACTIVE:
                raise FailedPrecondition(f"no reindex job is running (the latest is {latest.status})")
            row = (
                await conn.execute(
                    text(
                        "UPDATE index_reindex_jobs SET status = 'cancel_requested' WHERE id = :id "
                        f"RETURNING {_COLUMNS}, {_NOW} AS now"
                    ),
                    {"id": latest.id},
                )
            ).one()
            return _job(row)


async def _claim(conn: AsyncConnection, job_id: str, node: str, lease_ms: int) -> Any:
    return (
        await conn.execute(
            text(
                # A cancel asked of a worker that died stays asked: the new worker honours it.
                "UPDATE index_reindex_jobs SET status = CASE WHEN status = 'cancel_requested' THEN status "
                "ELSE 'running' END, error = '', node_id = :node, completed_at = 0, "
                f"last_updated_at = {_NOW}, lease_until = {_NOW} + :lease WHERE id = :id "
                f"RETURNING {_COLUMNS}, {_NOW} AS now"
            ),
            {"id": job_id, "node": node, "lease": lease_ms},
        )
    ).one()
