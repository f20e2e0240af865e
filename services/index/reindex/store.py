"""Reads and writes of ``index_reindex_jobs`` and their ``index_reindex_partitions``: the latest job
is the one that counts. A job's channels are split into partitions, each read by the worker
holding its lease, from its own cursor; the job's lease is renewed by any partition's progress, so
a job is live while any of its workers is. Lease times come from the database clock, so index
replicas and workers with skewed clocks agree on when a worker is gone (the pattern of the llm
service's post claims)."""

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
    "last_updated_at, lease_until, since_at, partitions"
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
    since_at: int
    partitions: int
    now: int

    @property
    def is_stale(self) -> bool:
        """Running (or cancel_requested) although its worker stopped renewing the lease."""
        return self.status in ACTIVE and self.lease_until < self.now


@dataclass(frozen=True)
class Partition:
    """One partition of a job's channels, leased by a worker, and where its reading stopped."""

    job_id: str
    part: int
    cursor_channel: str
    cursor_before: str


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

    async def job(self, job_id: str) -> Job:
        """The job ``job_id``; NotFound when there is none."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS}, {_NOW} AS now FROM index_reindex_jobs WHERE id = :id"), {"id": job_id}
                )
            ).first()
        if row is None:
            raise NotFound(f"no reindex job {job_id}")
        return _job(row)

    async def start(
        self, node: str, lease_ms: int, *, resume: bool, partitions: int = 1, catch_up_overlap_ms: int = -1
    ) -> tuple[Job, bool]:
        """Start a job for ``node`` (resuming the latest failed or orphaned one with ``resume``);
        the job and whether it is new. AlreadyExists while a live worker runs one.

        With ``catch_up_overlap_ms`` (0 or more) the job is a catch-up: it reads the posts created
        since the last completed job started, less that overlap; FailedPrecondition without one.
        A new job has ``partitions`` partitions, none leased yet; a resumed one keeps its own."""
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
            params = {"id": secrets.token_hex(13), "node": node, "lease": lease_ms, "since": since, "n": partitions}
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO index_reindex_jobs (id, status, started_at, node_id, cutoff_at, last_updated_at, "
                        f"lease_until, since_at, partitions) VALUES (:id, 'running', {_NOW}, :node, {_NOW}, {_NOW}, "
                        f"{_NOW} + :lease, :since, :n) RETURNING {_COLUMNS}, {_NOW} AS now"
                    ),
                    params,
                )
            ).one()
            await conn.execute(
                text(
                    "INSERT INTO index_reindex_partitions (job_id, part) "
                    "SELECT :id, part FROM generate_series(0, :n - 1) AS part"
                ),
                params,
            )
            return _job(row), True

    async def claim_partition(self, job_id: str, node: str, lease_ms: int) -> Partition | None:
        """Lease a partition of the running job ``job_id`` that no live worker holds and that is
        not done (a dead worker's resumes from its cursor); None when there is none."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"UPDATE index_reindex_partitions SET node_id = :node, lease_until = {_NOW} + :lease "
                        "WHERE (job_id, part) = (SELECT p.job_id, p.part FROM index_reindex_partitions p "
                        "JOIN index_reindex_jobs j ON j.id = p.job_id WHERE p.job_id = :id AND NOT p.done "
                        f"AND p.lease_until < {_NOW} AND j.status IN ('running', 'cancel_requested') "
                        "ORDER BY p.part LIMIT 1 FOR UPDATE OF p SKIP LOCKED) "
                        "RETURNING job_id, part, cursor_channel, cursor_before"
                    ),
                    {"id": job_id, "node": node, "lease": lease_ms},
                )
            ).first()
            if row is None:
                return None
            await _renew(conn, job_id, lease_ms)
            return Partition(**dict(row._mapping))

    async def renew(self, job_id: str, lease_ms: int) -> None:
        """Renew the running job's lease (its workers are alive although none stored a page yet)."""
        async with self.engine.begin() as conn:
            await _renew(conn, job_id, lease_ms)

    async def partitions_left(self, job_id: str) -> int:
        """Partitions of the job not done yet (leased or not)."""
        async with self.engine.connect() as conn:
            count = (
                await conn.execute(
                    text("SELECT count(*) FROM index_reindex_partitions WHERE job_id = :id AND NOT done"),
                    {"id": job_id},
                )
            ).scalar_one()
        return int(count)

    async def finish_partition(self, partition: Partition, node: str) -> bool:
        """Mark ``partition`` done (unless another worker took it over); whether partitions of the
        job are left. The job's row is locked first, so of two workers finishing its last two
        partitions at once exactly one sees none left."""
        params = {"id": partition.job_id, "part": partition.part, "node": node}
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT id FROM index_reindex_jobs WHERE id = :id FOR UPDATE"), params)
            await conn.execute(
                text(
                    "UPDATE index_reindex_partitions SET done = true, lease_until = 0 "
                    "WHERE job_id = :id AND part = :part AND node_id = :node"
                ),
                params,
            )
            left = (
                await conn.execute(
                    text("SELECT count(*) FROM index_reindex_partitions WHERE job_id = :id AND NOT done"), params
                )
            ).scalar_one()
        return bool(left)

    async def release_partition(self, partition: Partition, node: str) -> None:
        """Give ``partition`` up (its cursor kept): a resume or another worker takes it at once."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE index_reindex_partitions SET lease_until = 0 "
                    "WHERE job_id = :id AND part = :part AND node_id = :node"
                ),
                {"id": partition.job_id, "part": partition.part, "node": node},
            )

    async def set_total(self, job_id: str, total: int) -> None:
        """Record how many posts the job has to handle (its first worker counts them)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE index_reindex_jobs SET total_rows = :t WHERE id = :id AND total_rows = 0"),
                {"t": total, "id": job_id},
            )

    async def advance(
        self,
        conn: AsyncConnection,
        partition: Partition,
        node: str,
        cursor: tuple[str, str],
        handled: int,
        lease_ms: int,
    ) -> str:
        """In the transaction that stored a page: move the partition's cursor past it, count its
        posts and renew the leases. The job's status (``cancel_requested`` asks the worker to
        stop); Superseded when the partition is no longer this worker's or the job ended.

        The commit does not wait for the WAL flush: a database crash can lose only the last
        commits, each whole (its rows with its cursor), so the resume reads those pages again."""
        await conn.execute(text("SET LOCAL synchronous_commit = off"))
        moved = (
            await conn.execute(
                text(
                    "UPDATE index_reindex_partitions SET cursor_channel = :c, cursor_before = :b, "
                    f"lease_until = {_NOW} + :lease WHERE job_id = :id AND part = :part AND node_id = :node "
                    "AND NOT done RETURNING part"
                ),
                {
                    "c": cursor[0],
                    "b": cursor[1],
                    "lease": lease_ms,
                    "id": partition.job_id,
                    "part": partition.part,
                    "node": node,
                },
            )
        ).first()
        row = await _renew(conn, partition.job_id, lease_ms, handled) if moved else None
        if row is None:
            raise Superseded(f"partition {partition.part} of reindex job {partition.job_id} is no longer run by {node}")
        return str(row.status)

    async def finish(self, job_id: str, status: str, error: str = "") -> bool:
        """End the running job as ``status`` (a failure counts, keeps the cursors and can be
        resumed); False when it had ended already (another worker ended it)."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"UPDATE index_reindex_jobs SET status = :s, error = :e, completed_at = {_NOW}, "
                        f"last_updated_at = {_NOW}, lease_until = 0, "
                        "error_count = error_count + CASE WHEN :s = 'failed' THEN 1 ELSE 0 END "
                        "WHERE id = :id AND status IN ('running', 'cancel_requested') RETURNING id"
                    ),
                    {"s": status, "e": error, "id": job_id},
                )
            ).first()
        return row is not None

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


async def _renew(conn: AsyncConnection, job_id: str, lease_ms: int, handled: int = 0) -> Any:
    """Renew the running job's lease (adding ``handled`` posts); its row, None once it ended."""
    return (
        await conn.execute(
            text(
                f"UPDATE index_reindex_jobs SET processed_rows = processed_rows + :n, last_updated_at = {_NOW}, "
                f"lease_until = {_NOW} + :lease WHERE id = :id AND status IN ('running', 'cancel_requested') "
                "RETURNING status"
            ),
            {"n": handled, "lease": lease_ms, "id": job_id},
        )
    ).first()


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
