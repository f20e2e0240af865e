"""A PostgreSQL outage as users meet it: reads through the gateway answer 503 with Retry-After, and
a DM posted while the database is unreachable is answered once it is back, or gets an error reply
when it stays away: never dropped silently, always logged.

The module's own database is made unreachable for real (new connections refused, open ones
terminated by the server), so the session's other databases, and the suites using them, are
not touched.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

# How long the gateway retries a post whose answer cannot start (a dependency is down).
ANSWER_RETRY_SECONDS = 8
# The gateway's deadline on its calls: short, so that a call held up in the database fails and is
# tried again within a test.
RPC_TIMEOUT_SECONDS = 2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        env = {
            **FAST,
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_GATEWAY_ANSWER_RETRY_SECONDS": str(ANSWER_RETRY_SECONDS),
            "AGENTS_GATEWAY_RPC_TIMEOUT_SECONDS": str(RPC_TIMEOUT_SECONDS),
        }
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


@contextlib.asynccontextmanager
async def database_unreachable(world: World) -> AsyncIterator[None]:
    """The cluster's database refuses connections and drops the open ones until the block ends."""
    name = psycopg.conninfo.conninfo_to_dict(world.h.database_url)["dbname"]
    database = sql.Identifier(str(name))
    async with await psycopg.AsyncConnection.connect(world.h.postgres.admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(database))
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(database))


def gateway_logs_about(world: World, post_id: str) -> list[dict[str, Any]]:
    entries = []
    for line in world.h.logs.get("gateway", []):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("post_id") == post_id:
                entries.append(entry)
    return entries


async def test_reads_while_the_database_is_unreachable_answer_503_with_retry_after(world: World) -> None:
    ada = world.mm.add_user("ada")
    assert (await world.h.get("/ai_threads", user=ada))[0] == 200
    async with database_unreachable(world):
        status, body, headers = await world.h.request("GET", "/ai_threads", user=ada)
        assert status == 503, body
        assert int(headers["Retry-After"]) >= 1
        assert body["error"] and world.h.postgres.admin_url.split("?")[0] not in body["error"]
    assert (await world.h.get("/ai_threads", user=ada))[0] == 200


async def test_a_dm_posted_while_the_database_is_unreachable_is_answered_once_it_is_back(world: World) -> None:
    bot = await world.agent("patient")
    bea = world.mm.add_user("bea")
    dm = world.mm.add_direct_channel(bea, bot)
    world.openai.enqueue(FakeResponse.text("Back online."), FakeResponse.text("Title"))
    async with database_unreachable(world):
        post = await world.mm.user_posts(bea, dm, "are you there?")
        await poll(lambda: gateway_logs_about(world, post["id"]), within=15, message="the failure was not logged")
        assert world.replies_to(post["id"]) == []
    reply = await world.answer_to(post, within=30)
    assert reply["message"] == "Back online." and reply["props"]["agents_stream_status"] == "done"
    assert [r["id"] for r in world.replies_to(post["id"])] == [reply["id"]]


async def test_a_dm_posted_while_the_database_stays_unreachable_gets_an_error_reply(world: World) -> None:
    bot = await world.agent("stranded")
    cal = world.mm.add_user("cal")
    dm = world.mm.add_direct_channel(cal, bot)
    async with database_unreachable(world):
        post = await world.mm.user_posts(cal, dm, "anyone?")
        reply = await world.answer_to(post, within=ANSWER_RETRY_SECONDS + 20)
        assert reply["user_id"] == bot.id and reply["root_id"] == post["id"]
        assert reply["props"]["agents_stream_status"] == "interrupted"
        assert "unavailable" in reply["message"]
        assert any(e["level"] == "error" for e in gateway_logs_about(world, post["id"]))
    assert [r["id"] for r in world.replies_to(post["id"])] == [reply["id"]]


async def test_a_claim_that_expires_while_its_claim_is_tried_again_is_answered_once(world: World) -> None:
    """A ``ClaimPost`` that commits after its deadline is tried again after a backoff; when the
    lease it took runs out meanwhile, the replica's own sweep takes the claim. That replica is
    already answering the post: the sweep must leave it, or two reply posts are created."""
    bot = await world.agent("claimrace")
    dee = world.mm.add_user("dee")
    dm = world.mm.add_direct_channel(dee, bot)
    world.openai.enqueue(FakeResponse.text("Warm."), FakeResponse.text("Title"))
    warm = await world.mm.user_posts(dee, dm, "warm up")
    await world.answer_to(warm)
    post = world.mm.add_post(dee, dm, "answer me once")
    # Still streaming when the claim is tried again, two seconds after the sweep.
    answer = " ".join(f"part{i}" for i in range(40))
    world.openai.enqueue(FakeResponse.text(answer, tokens=40, token_delay=0.1), FakeResponse.text("Title"))
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        [claimant] = await (
            await conn.execute("SELECT claimant FROM llm_handledposts WHERE postid = %s", (warm["id"],))
        ).fetchone()
        # The claim as an attempt that committed after its deadline left it, its lease now over.
        await conn.execute(
            "INSERT INTO llm_handledposts (postid, responsepostid, claimant, leaseuntil, finished, createdat) "
            "VALUES (%s, '', %s, 0, false, 0)",
            (post["id"], claimant),
        )
        # Held up in the database, every try fails on its deadline (the sweep skips a locked row)...
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM llm_handledposts WHERE postid = %s FOR UPDATE", (post["id"],))
            await world.mm.hub.post_created(post)
            await poll(
                lambda: any(e.get("retry_in", 0) >= 2 for e in gateway_logs_about(world, post["id"])),
                within=ANSWER_RETRY_SECONDS,
                message="the claim was not tried again",
            )
        # ...until, during a backoff of two seconds, the sweep (twice a second) finds the lease over.
    reply = await world.answer_to(post, within=30)
    assert reply["message"] == answer and reply["props"]["agents_stream_status"] == "done"
    created = [p for p in world.mm.state.posts.values() if p["props"].get("responding_to") == post["id"]]
    assert [p["id"] for p in created] == [reply["id"]], "a second reply post was created"
    said = [e["msg"] for e in gateway_logs_about(world, post["id"])]
    assert "a claim expired while this replica answered it" in said, said
