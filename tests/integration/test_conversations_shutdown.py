"""SIGTERM on the only gateway while it streams an answer into a DM reply: the reply is finished
within the grace period, or, when the answer outlasts it, the post says it was handed off and the
claim is handed back, so the next gateway to start finishes the same post. Never left
"streaming" with nobody relaying it.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

GRACE_SECONDS = 8


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        env = {**FAST, "AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)}
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def gateway_running(world: World) -> AsyncIterator[None]:
    """Each test starts with one gateway on the harness's gateway port (a test stops it)."""
    cluster = world.h.cluster
    assert cluster is not None
    if "gateway" not in cluster.processes:
        await cluster.start_service("gateway", module="gateway")
        await cluster.wait_healthy(names=("gateway",), timeout=60)
    yield
    await poll(lambda: world.openai.queued == 0, within=30)


async def streaming_dm(world: World, username: str, answer: str, *, token_delay: float) -> tuple[dict, dict]:
    """A DM whose answer is streaming into its reply post: (user post, live reply post)."""
    bot = await world.agent(username)
    user: FakeUser = world.mm.add_user(f"{username}-user")
    dm = world.mm.add_direct_channel(user, bot)
    tokens = len(answer.split())
    world.openai.enqueue(FakeResponse.text(answer, tokens=tokens, token_delay=token_delay), FakeResponse.text("Title"))
    post = await world.mm.user_posts(user, dm, "a long answer please")
    [reply] = await poll(lambda: world.replies_to(post["id"]), within=20)
    live = world.mm.post(reply["id"])
    await poll(lambda: live["message"].strip(), within=20)
    return post, live


async def sigterm_gateway(world: World) -> int | None:
    assert world.h.cluster is not None
    return await world.h.cluster.stop_service("gateway", sig=signal.SIGTERM, grace=GRACE_SECONDS + 20)


async def test_sigterm_mid_answer_finishes_a_reply_that_ends_within_the_grace(world: World) -> None:
    answer = " ".join(f"w{i}" for i in range(15))
    _, live = await streaming_dm(world, "finisher", answer, token_delay=0.1)
    assert await sigterm_gateway(world) == 0
    assert live["props"]["agents_stream_status"] == "done"
    assert live["message"] == answer


async def test_sigterm_mid_answer_hands_off_a_reply_that_outlasts_the_grace(world: World) -> None:
    answer = " ".join(f"part{i}" for i in range(80))
    post, live = await streaming_dm(world, "handoff", answer, token_delay=0.2)
    assert await sigterm_gateway(world) == 0
    # Marked, with the text so far, the moment the gateway is gone: nobody relays it now.
    assert live["props"]["agents_stream_status"] == "handed_off"
    assert live["message"].startswith("part0") and "continues here" in live["message"]

    # The claim was handed back: the next gateway takes the same post over and finishes it.
    assert world.h.cluster is not None
    await world.h.cluster.start_service("gateway", module="gateway")
    await poll(lambda: live["props"]["agents_stream_status"] == "done", within=60)
    assert live["message"] == answer
    assert [r["id"] for r in world.replies_to(post["id"])] == [live["id"]]


async def test_sigterm_mid_summary_marks_a_summary_that_outlasts_the_grace_interrupted(world: World) -> None:
    await world.agent("summarist")
    dee = world.mm.add_user("dee")
    town = world.town("shutdown-town", dee)
    world.mm.add_post(dee, town, "Decision: we ship on Monday.")
    answer = " ".join(f"point{i}" for i in range(80))
    world.openai.enqueue(FakeResponse.text(answer, tokens=80, token_delay=0.2))
    status, body, _ = await world.h.request(
        "POST",
        f"/channel/{town.id}/analyze?botUsername=summarist",
        user=dee,
        json_body={"analysis_type": "summarize", "days": 1},
    )
    assert status == 200, body
    summary = world.mm.post(body["postid"])
    await poll(lambda: summary["message"].strip(), within=20)
    assert await sigterm_gateway(world) == 0
    # Nothing takes a summary over: it says it was cut short rather than staying "streaming".
    assert summary["props"]["agents_stream_status"] == "interrupted"
    assert summary["message"].startswith("point0") and summary["message"] != answer
