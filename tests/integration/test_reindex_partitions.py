"""A partitioned reindex: the index service starts three worker processes
(``python -m services.index.reindex.worker``), each leasing partitions of the job; one is killed
with SIGKILL mid-run, and its partition is resumed by another worker with no post missing or
duplicated."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio

from tests.harness import SessionPostgres
from tests.integration.test_reindex import World, reindex_world
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKERS = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    env = {"AGENTS_INDEX_REINDEX_LEASE_SECONDS": "4", "AGENTS_INDEX_REINDEX_WORKERS": str(WORKERS)}
    tmp = Path(tmp_path_factory.mktemp("partitions"))
    async with reindex_world(
        postgres, tmp, ("partitioner", "parts", "part-scribe"), channels=12, posts=60, env=env
    ) as w:
        yield w


async def partitions(world: World, job_id: str) -> list[tuple[int, bool, str, str]]:
    async with await psycopg.AsyncConnection.connect(world.h.database_url) as conn:
        cursor = await conn.execute(
            "SELECT part, done, node_id, cursor_channel FROM index_reindex_partitions WHERE job_id = %s ORDER BY part",
            (job_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in await cursor.fetchall()]


async def test_a_partitioned_reindex_survives_a_killed_worker(world: World) -> None:
    world.embed.latency = 1.0  # every partition is still being read when one worker is killed
    try:
        status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
        assert status == 200, job
        status, refused = await world.call("POST", "/admin/reindex", {"clearIndex": True})
        assert status == 409 and job["job_id"] in refused["error"], refused

        async def reading() -> tuple[int, bool, str, str] | None:
            parts = await partitions(world, job["job_id"])
            assert len(parts) == WORKERS, parts
            return next((p for p in parts if p[2] and p[3] and not p[1]), None)

        killed_part, _, killed_node, _ = await poll(reading, within=60, message="no worker ever read a partition")
        os.kill(int(killed_node.rsplit("-", 1)[1]), signal.SIGKILL)
        world.embed.latency = 0.0
        done = await world.ended(within=120)
    finally:
        world.embed.latency = 0.0
    assert done["status"] == "completed" and done["job_id"] == job["job_id"], done
    assert done["processed_rows"] >= done["total_rows"] == len(world.expected) + 12
    await world.assert_exactly_once()
    after = {part: (finished, node) for part, finished, node, _ in await partitions(world, job["job_id"])}
    assert all(finished for finished, _ in after.values()), after
    assert after[killed_part][1] not in ("", killed_node), "the killed worker's partition was not resumed elsewhere"


async def test_a_job_whose_last_worker_died_before_completing_it_is_completed(world: World) -> None:
    # What a worker leaves when it dies between finishing the last partition and completing the
    # job: every partition done, the job running with its lease run out.
    job_id = "deadbeef" * 3
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO index_reindex_jobs (id, status, started_at, node_id, cutoff_at, last_updated_at, "
            "lease_until, since_at, partitions) SELECT %s, 'running', now_ms, 'gone-1', now_ms, now_ms, 0, 0, 2 "
            "FROM (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS now_ms) AS clock",
            (job_id,),
        )
        await conn.execute(
            "INSERT INTO index_reindex_partitions (job_id, part, done, node_id) VALUES (%s, 0, true, 'gone-1'), "
            "(%s, 1, true, 'gone-1')",
            (job_id, job_id),
        )

    done = await world.ended(within=30)
    assert done["status"] == "completed" and done["job_id"] == job_id, done
