"""Reindex jobs end to end: the admin routes start, watch and cancel a job in the real index
process, which reads every team channel's posts from the fake Mattermost in keyset pages and
embeds them with the fake embeddings API; a job survives an embedding outage and a kill -9 of
its worker with every post indexed exactly once, covers DMs and group messages, and shows on the
index's metrics."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from prometheus_client.samples import Sample

from tests.contract.openapi import assert_matches_openapi
from tests.fakes.embeddings import FakeEmbeddings
from tests.fakes.mattermost.state import FakeTeam, FakeUser
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.test_metrics import scrape, value
from tests.integration.test_semantic_search import DIMENSIONS
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

PAGE = 5


@dataclass
class World:
    h: ClusterHarness
    embed: FakeEmbeddings
    admin: FakeUser
    team: FakeTeam
    author: FakeUser
    expected: set[str]

    def seed(self, channels: int, posts: int) -> None:
        """Posts the reindex must find (and a bot's and a system post it must leave out)."""
        mm = self.h.mattermost
        for c in range(channels):
            channel = mm.add_channel(self.team.id, f"room-{len(self.expected)}-{c}")
            for p in range(posts):
                self.expected.add(mm.add_post(self.author, channel, f"note {c} {p} about the dugong")["id"])
            mm.add_post(self.author, channel, "dugong joined", props={"from_bot": "true"})

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, answer, _ = await self.h.request(method, path, user=self.admin, json_body=body)
        if status < 300:
            assert_matches_openapi(method, path, status, answer)
        return status, answer

    async def status(self) -> dict[str, Any]:
        status, job = await self.call("GET", "/admin/reindex/status")
        assert status == 200, job
        return job

    async def ended(self, within: float = 60) -> dict[str, Any]:
        async def done() -> dict[str, Any] | None:
            status, job = await self.call("GET", "/admin/reindex/status")
            if status == 503:
                return None  # the index process is restarting
            assert status == 200, job
            return job if job["status"] in {"completed", "failed", "canceled"} else None

        job: dict[str, Any] = await poll(done, within=within, interval=0.1, message="the reindex job never ended")
        return job

    async def rows(self) -> list[tuple[str, int]]:
        async with await psycopg.AsyncConnection.connect(self.h.database_url) as conn:
            cursor = await conn.execute("SELECT post_id, chunk_index FROM index_post_chunks")
            return [(r[0], r[1]) for r in await cursor.fetchall()]

    async def assert_exactly_once(self) -> None:
        rows = await self.rows()
        posts = [post for post, _ in rows]
        assert len(posts) == len(set(posts)), "a post has duplicate rows"
        assert set(posts) == self.expected, f"missing {len(self.expected - set(posts))} posts"


@contextlib.asynccontextmanager
async def reindex_world(
    postgres: SessionPostgres,
    tmp: Path,
    names: tuple[str, str, str],
    *,
    channels: int,
    posts: int,
    env: dict[str, str],
) -> AsyncIterator[World]:
    """A cluster whose search embeds with the fake embedder (``env`` added to its settings), an
    admin, a team and an author (``names``) whose seeded posts a reindex must find."""
    async with FakeEmbeddings() as embed:
        seed = tmp / "config.json"
        seed.write_text(json.dumps({"embeddingSearchConfig": embed.search_config(DIMENSIONS)}))
        base = {
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_INDEX_CONFIG_SEED_FILE": str(seed),
            "AGENTS_INDEX_EMBEDDING_PRIVATE_HOSTNAMES": "127.0.0.1",
            "AGENTS_INDEX_REINDEX_PAGE_SIZE": str(PAGE),
        }
        async with ClusterHarness(postgres, env=base | env) as h:
            mm = h.mattermost
            admin, team, author = names
            w = World(
                h,
                embed,
                mm.add_user(admin, roles="system_user system_admin"),
                mm.add_team(team),
                mm.add_user(author),
                set(),
            )
            w.seed(channels=channels, posts=posts)
            yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    env = {"AGENTS_INDEX_REINDEX_LEASE_SECONDS": "2", "AGENTS_INDEX_REINDEX_RETRY_SECONDS": "1"}
    tmp = Path(tmp_path_factory.mktemp("reindex"))
    async with reindex_world(postgres, tmp, ("reindexer", "archive", "scribe"), channels=3, posts=12, env=env) as w:
        yield w


async def test_a_reindex_stores_every_post_once_and_reports_progress(world: World) -> None:
    status, refused = await world.call("POST", "/admin/reindex/catchup")
    assert status == 400 and "no reindex has completed" in refused["error"], refused
    # Nothing to resume and nothing indexed yet: a first reindex without clearIndex starts afresh.
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200 and job["status"] == "running", job
    done = await world.ended()
    assert done["status"] == "completed" and done["job_id"] == job["job_id"], done
    # Every post read is counted, the bots' too; only users' posts are stored.
    assert done["processed_rows"] == done["total_rows"] == len(world.expected) + 3
    assert done["posts_per_second"] > 0 and done["eta_ms"] == 0
    await world.assert_exactly_once()
    status, health = await world.call("GET", "/admin/reindex/health-check")
    assert status == 200 and health["model_compatible"] and not health["model_needs_reindex"], health
    # Mattermost counts the bots' posts too (one per channel), which are not indexed.
    assert (health["indexed_post_count"], health["missing_posts"]) == (len(world.expected), 3), health
    assert health["status"] == "mismatch"


async def test_a_second_reindex_is_refused_while_one_runs_and_a_cancel_stops_it(world: World) -> None:
    world.embed.latency = 0.3  # slow enough to still be running when asked again
    try:
        status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
        assert status == 200, job
        status, refused = await world.call("POST", "/admin/reindex", {})
        assert status == 409 and job["job_id"] in refused["error"], refused
        status, canceling = await world.call("POST", "/admin/reindex/cancel")
        assert status == 200 and canceling["status"] == "cancel_requested", canceling
        assert (await world.ended())["status"] == "canceled"
    finally:
        world.embed.latency = 0.0
    status, answer = await world.call("POST", "/admin/reindex/cancel")
    assert status == 400 and "no reindex job is running" in answer["error"]


async def test_a_reindex_failed_by_an_embedding_outage_resumes_where_it_stopped(world: World) -> None:
    world.embed.refuse_next(10_000, status=503)
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
    assert status == 200, job
    failed = await world.ended()
    assert failed["status"] == "failed" and failed["resumable"] and failed["error_count"] == 1, failed
    world.embed.drop_script()
    status, resumed = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200 and resumed["job_id"] == job["job_id"], resumed
    assert (await world.ended())["status"] == "completed"
    await world.assert_exactly_once()


async def test_a_reindex_whose_worker_is_killed_is_taken_over_and_completes(world: World) -> None:
    world.seed(channels=2, posts=12)
    world.embed.latency = 0.2
    cluster = world.h.cluster
    assert cluster is not None
    try:
        status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
        assert status == 200, job

        async def midway() -> bool:
            return (await world.status())["processed_rows"] >= 2 * PAGE

        await poll(midway, within=30, message="the job made no progress")
        await cluster.stop_service("index", sig=signal.SIGKILL)
        world.embed.latency = 0.0
        await cluster.start_service("index")
        await cluster.wait_healthy(names=("index",), timeout=60)
        done = await world.ended()
    finally:
        world.embed.latency = 0.0
    assert done["status"] == "completed" and done["job_id"] == job["job_id"], done
    await world.assert_exactly_once()


async def test_a_catch_up_indexes_the_posts_created_since_the_last_reindex(world: World) -> None:
    world.seed(channels=1, posts=7)
    status, job = await world.call("POST", "/admin/reindex/catchup")
    assert status == 200 and job["status"] == "running", job
    assert (await world.ended())["status"] == "completed"
    await world.assert_exactly_once()


async def test_a_reindex_covers_direct_and_group_messages_but_not_dms_with_a_bot(world: World) -> None:
    mm = world.h.mattermost
    reader, other = mm.add_user("dm-reader"), mm.add_user("dm-other")
    bot = mm.add_user("dm-helper-bot", is_bot=True)
    direct = mm.add_direct_channel(world.author, reader)
    group = mm.state.add_channel("", "scribe-reader-other", "G")
    for user in (world.author, reader, other):
        mm.add_member(group, user)
    for channel in (direct, group):
        for p in range(PAGE + 2):  # more than a page
            world.expected.add(mm.add_post(world.author, channel, f"private note {p} on the dugong")["id"])
    mm.add_post(reader, mm.add_direct_channel(reader, bot), "a question for the dugong bot")
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
    assert status == 200, job
    assert (await world.ended())["status"] == "completed"
    await world.assert_exactly_once()


async def test_the_index_metrics_show_the_latest_reindex_without_ids(world: World) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200, job
    done = await world.ended()
    assert done["status"] == "completed", done

    async def shown() -> list[Sample] | None:
        samples = await scrape(world.h, "index")
        return samples if value(samples, "agents_index_reindex_status", status="completed") == 1 else None

    samples = await poll(shown, within=30, message="the index's metrics never showed the completed reindex")
    assert value(samples, "agents_index_reindex_running") == 0
    assert value(samples, "agents_index_reindex_processed_rows") == done["processed_rows"] > 0
    assert value(samples, "agents_index_reindex_total_rows") == done["total_rows"]
    statuses = {s.labels["status"]: s.value for s in samples if s.name == "agents_index_reindex_status"}
    assert statuses == {"running": 0, "cancel_requested": 0, "completed": 1, "failed": 0, "canceled": 0}


async def test_pages_embedded_while_a_commit_waits_are_committed_together(world: World) -> None:
    # A first job records the embedding space, so the next one starts without emptying the index.
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200, job
    assert (await world.ended())["status"] == "completed"
    async with await psycopg.AsyncConnection.connect(world.h.database_url) as lock:
        # The job's first commit waits on this lock while the pages behind it are read and embedded.
        await lock.execute("LOCK TABLE index_post_chunks IN SHARE MODE")
        asked = len(world.embed.answered)
        status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
        assert status == 200, job

        async def read_ahead() -> bool:
            return len(world.embed.answered) - asked >= 8  # the job's pages_ahead: the reader waits

        await poll(read_ahead, within=30, message="the job did not read ahead while its first commit waited")
        await lock.rollback()
    assert (await world.ended())["status"] == "completed"
    pages = len(world.embed.answered) - asked  # one request per page: a page's five texts fit in one
    async with await psycopg.AsyncConnection.connect(world.h.database_url) as conn:
        cursor = await conn.execute("SELECT count(DISTINCT xmin::text) FROM index_post_chunks")
        row = await cursor.fetchone()
    assert row is not None
    # Every row was rewritten by the job: its commits are the distinct transaction ids of the rows.
    assert row[0] <= pages - 4, f"{row[0]} commits for {pages} pages"
    await world.assert_exactly_once()
