"""Two gateway replicas answering the same bot: exactly one answers each post, and when the one
rendering a reply is killed mid-answer the other finishes the same reply post.

The replica that holds a post's claim is read from the llm service's claims table (its
``Claimant`` is the replica id we gave each gateway), so the test kills the right process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Process name in the harness for each replica id.
REPLICAS = {"replica-a": "gateway", "replica-b": "gateway-b"}
LEASE_SECONDS = 2


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        env = {
            **FAST,
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_GATEWAY_REPLICA_ID": "replica-a",
            "AGENTS_GATEWAY_CLAIM_LEASE_SECONDS": str(LEASE_SECONDS),
            "AGENTS_GATEWAY_CLAIM_SWEEP_SECONDS": "0.3",
        }
        async with ClusterHarness(postgres, env=env) as harness:
            await harness.start_gateway("gateway-b", env={"AGENTS_GATEWAY_REPLICA_ID": "replica-b"})
            w = World(harness, openai)
            await w.setup()
            yield w


async def claim_row(world: World, post_id: str) -> tuple[str, str]:
    """The post's claim: its claimant and the reply post recorded on it ("" when none)."""
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        row = await (
            await conn.execute("SELECT claimant, responsepostid FROM llm_handledposts WHERE postid = %s", (post_id,))
        ).fetchone()
    return (str(row[0]), str(row[1] or "")) if row else ("", "")


async def claimant_of(world: World, post_id: str) -> str:
    return (await claim_row(world, post_id))[0]


async def recorded_reply(world: World, post_id: str) -> str:
    return (await claim_row(world, post_id))[1]


async def another_replica(world: World) -> None:
    """Start one more gateway replica (each killing test leaves one fewer)."""
    n = len(REPLICAS) + 1
    REPLICAS[f"replica-{n}"] = f"gateway-{n}"
    await world.h.start_gateway(f"gateway-{n}", env={"AGENTS_GATEWAY_REPLICA_ID": f"replica-{n}"})


def posts_created(world: World) -> int:
    return sum(r.path == "/api/v4/posts" for r in world.mm.requests_to("POST", "/api/v4/posts"))


def streaming_posts(world: World, bot_id: str) -> list[dict[str, Any]]:
    return [
        p
        for p in world.mm.state.posts.values()
        if p["user_id"] == bot_id and not p["delete_at"] and p["props"].get("agents_stream_status") == "streaming"
    ]


async def test_a_replica_slow_to_create_the_reply_post_keeps_its_claim(world: World) -> None:
    """The claim is renewed from the moment it is won, not only once the reply streams: a reply
    post that takes several leases to create is neither taken over nor created twice."""
    bot = await world.agent("patient", sockets=2)
    ana = world.mm.add_user("ana")
    dm = world.mm.add_direct_channel(ana, bot)
    world.openai.enqueue(FakeResponse.text("Worth the wait."), FakeResponse.text("Title"))
    creates_before = posts_created(world)
    with world.mm.holding("/api/v4/posts") as gate:
        post = await world.mm.user_posts(ana, dm, "take your time")
        await poll(lambda: gate.arrived, within=15)
        owner = await poll(lambda: claimant_of(world, post["id"]), within=10)
        await asyncio.sleep(3 * LEASE_SECONDS)  # three leases, ten sweeps of the other replica
        assert await claimant_of(world, post["id"]) == owner
    final = await world.answer_to(post, within=30)
    assert final["message"] == "Worth the wait."
    assert posts_created(world) == creates_before + 1
    assert await claimant_of(world, post["id"]) == owner


async def test_a_claim_taken_over_is_renewed_from_the_takeover_and_answered_once(world: World) -> None:
    """A replica taking over a dead one's claim renews it from the takeover on: reading the post
    back can outlast a lease, and the claim must not pass on to a second answer meanwhile."""
    bot = await world.agent("heir", sockets=2)
    eve = world.mm.add_user("eve")
    dm = world.mm.add_direct_channel(eve, bot)
    world.openai.enqueue(FakeResponse.text("Inherited."), FakeResponse.text("Title"))
    # Its replica died after claiming it, before creating the reply (no event is sent here).
    post = world.mm.add_post(eve, dm, "answer me after the crash")
    creates_before = posts_created(world)

    async def taken_over() -> str | None:
        claimant = await claimant_of(world, post["id"])
        return claimant if claimant in REPLICAS else None

    with world.mm.holding(f"/api/v4/posts/{post['id']}") as gate:
        async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO llm_handledposts (postid, responsepostid, claimant, leaseuntil, finished, createdat) "
                "VALUES (%s, '', 'replica-gone', 0, false, 0)",
                (post["id"],),
            )
        await poll(lambda: gate.arrived, within=15)
        owner = await poll(taken_over, within=10)
        await asyncio.sleep(3 * LEASE_SECONDS)  # three leases, ten sweeps of each replica
        # Every takeover reads the post (the same replica's sweep may take its own lapsed claim).
        assert gate.arrived == 1
        assert await claimant_of(world, post["id"]) == owner
    final = await world.answer_to(post, within=30)
    assert final["message"] == "Inherited."
    assert posts_created(world) == creates_before + 1
    assert await claimant_of(world, post["id"]) == owner


async def a_long_answer_under_way(world: World, name: str) -> tuple[FakeUser, dict[str, Any], dict[str, Any], str]:
    """Agent ``name`` answering a DM in 60 tokens 0.1 s apart, once its reply shows text: the
    bot, the user's post, the reply post and the whole answer."""
    bot = await world.agent(name, sockets=2)
    user = world.mm.add_user(f"{name}-user")
    dm = world.mm.add_direct_channel(user, bot)
    answer = " ".join(f"part{i}" for i in range(60))
    world.openai.enqueue(FakeResponse.text(answer, tokens=60, token_delay=0.1), FakeResponse.text("Title"))
    post = await world.mm.user_posts(user, dm, "a long answer please")
    [reply] = await poll(lambda: world.replies_to(post["id"]))
    await poll(lambda: world.mm.post(reply["id"])["message"].strip(), within=10)
    return bot, post, reply, answer


async def kill_claimant(world: World, post_id: str) -> str:
    """SIGKILL the replica holding the claim on ``post_id``; returns its replica id."""
    owner = await claimant_of(world, post_id)
    assert owner in REPLICAS
    assert world.h.cluster is not None
    await world.h.cluster.stop_service(REPLICAS[owner], sig=signal.SIGKILL)
    return owner


async def assert_one_reply_finished(world: World, bot: FakeUser, post_id: str, reply_id: str, answer: str) -> None:
    final = await world.final(reply_id, within=30)
    assert final["props"]["agents_stream_status"] == "done"
    assert final["message"] == answer
    assert [r["id"] for r in world.replies_to(post_id)] == [reply_id]
    assert streaming_posts(world, bot.id) == []


async def assert_answered_once(world: World, bot: FakeUser, post_id: str, reply_id: str, answer: str) -> None:
    """One reply finished with ``answer``, still the only one once a second claimant would have
    answered."""
    await assert_one_reply_finished(world, bot, post_id, reply_id, answer)
    await asyncio.sleep(2 * LEASE_SECONDS)
    assert [r["id"] for r in world.replies_to(post_id)] == [reply_id]


async def a_dm_with(world: World, name: str, answer: str) -> tuple[FakeUser, FakeUser, dict[str, Any]]:
    """Agent ``name``, a user and their DM, ``answer`` scripted; on one more replica, since each
    killing test leaves one fewer."""
    await another_replica(world)
    bot = await world.agent(name, sockets=2)
    user = world.mm.add_user(f"{name}-user")
    dm = world.mm.add_direct_channel(user, bot)
    world.openai.enqueue(FakeResponse.text(answer), FakeResponse.text("Title"))
    return bot, user, dm


async def test_killing_the_replica_mid_answer_leaves_one_reply_finished_by_the_other(world: World) -> None:
    bot, post, reply, answer = await a_long_answer_under_way(world, "survivor")
    owner = await kill_claimant(world, post["id"])
    assert world.mm.post(reply["id"])["message"] != answer  # killed mid-answer

    await assert_one_reply_finished(world, bot, post["id"], reply["id"], answer)
    assert await claimant_of(world, post["id"]) not in ("", owner)


async def test_a_replica_killed_before_its_reply_was_recorded_leaves_one_reply_finished(world: World) -> None:
    """The claim never named the reply post (its RenewClaim did not land before the replica died,
    while the turn it started goes on): the survivor finishes that reply from its turn instead of
    starting a second one and leaving the first streaming."""
    await another_replica(world)  # the tests before killed one
    bot, post, reply, answer = await a_long_answer_under_way(world, "unrecorded")
    await kill_claimant(world, post["id"])
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        await conn.execute("UPDATE llm_handledposts SET responsepostid = '' WHERE postid = %s", (post["id"],))
    assert world.mm.post(reply["id"])["message"] != answer

    await assert_answered_once(world, bot, post["id"], reply["id"], answer)


async def test_a_replica_killed_creating_the_reply_leaves_one_reply_answered_into(world: World) -> None:
    """The replica died while Mattermost created its reply post: the post exists, its id never
    reached the claim and no turn started. The survivor answers into that post rather than
    leaving it streaming beside a second reply."""
    bot, fay, dm = await a_dm_with(world, "orphaned", "Answered in the reply left.")
    with world.mm.holding("/api/v4/posts") as gate:
        post = await world.mm.user_posts(fay, dm, "are you there")
        await poll(lambda: gate.arrived, within=15)
        await poll(lambda: claimant_of(world, post["id"]), within=10)
        await kill_claimant(world, post["id"])
    [reply] = await poll(lambda: world.replies_to(post["id"]), within=10)

    await assert_answered_once(world, bot, post["id"], reply["id"], "Answered in the reply left.")


async def test_a_replica_killed_before_its_turn_started_leaves_its_reply_answered_into(world: World) -> None:
    """The replica recorded its reply post on the claim, then died while the llm was still
    checking access for its turn: no turn ever wrote into that reply. The survivor answers into
    it rather than ending it interrupted and empty."""
    bot, gus, dm = await a_dm_with(world, "unstarted", "Answered after all.")
    with world.mm.holding("/api/v4/posts") as creating:
        post = await world.mm.user_posts(gus, dm, "anyone home")
        await poll(lambda: creating.arrived, within=15)
        # The turn's access check reads the user: held from here, after the gateway's own check.
        with world.mm.holding(f"/api/v4/users/{gus.id}") as checking:
            creating.release()
            [reply] = await poll(lambda: world.replies_to(post["id"]), within=10)
            await poll(lambda: checking.arrived, within=10)
            await poll(lambda: recorded_reply(world, post["id"]), within=10)
            await kill_claimant(world, post["id"])

    await assert_answered_once(world, bot, post["id"], reply["id"], "Answered after all.")


async def test_a_replica_that_fell_behind_leaves_the_reply_it_lost_to_another_claimant(world: World) -> None:
    """The claimant froze while Mattermost created its reply post; its claim passed to another
    replica, which answered into that reply. When the first one wakes, its own turn is refused (the
    post is answered): it must not delete the reply, which the other replica's turn writes into."""
    _, hal, dm = await a_dm_with(world, "behind", "Answered by the other replica.")
    with world.mm.holding("/api/v4/posts") as creating:
        post = await world.mm.user_posts(hal, dm, "still there")
        await poll(lambda: creating.arrived, within=15)
        frozen = REPLICAS[await claimant_of(world, post["id"])]
        assert world.h.cluster is not None
        pid = world.h.cluster.processes[frozen].proc.pid
        os.kill(pid, signal.SIGSTOP)
    try:
        [reply] = await poll(lambda: world.replies_to(post["id"]), within=10)
        final = await world.final(reply["id"], within=30)  # answered by the claimant after it
    finally:
        os.kill(pid, signal.SIGCONT)
    assert final["message"] == "Answered by the other replica."

    # Woken, the replica reads its new reply's id, has its turn refused, and leaves the post alone.
    await asyncio.sleep(2 * LEASE_SECONDS)
    assert world.mm.post(reply["id"])["message"] == "Answered by the other replica."
    assert not world.mm.requests_to("DELETE", f"/api/v4/posts/{reply['id']}")
    assert [r["id"] for r in world.replies_to(post["id"])] == [reply["id"]]
