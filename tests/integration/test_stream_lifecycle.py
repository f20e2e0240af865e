"""Streams over their whole life, through the real cluster: a stream outlives its gRPC
connection's max age, an answer is final as soon as it ends whatever becomes of its title, and a
client that cancels a stream leaves no error in any service's log.

Every gRPC connection in this cluster is asked to go away (GOAWAY) after one second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.common.identity import Identity
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

# 40 tokens 0.1 s apart: several connection ages (and their GOAWAYs) pass while they stream.
LONG_ANSWER = " ".join(f"word{i}" for i in range(40))
BRIDGE_BODY = {"posts": [{"role": "user", "message": "Say a lot"}]}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    env = {**FAST, "AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_GRPC_MAX_CONNECTION_AGE_SECONDS": "1"}
    async with FakeOpenAI() as openai, ClusterHarness(postgres, env=env) as harness:
        w = World(harness, openai)
        await w.setup()
        yield w


async def bridge_events(world: World, agent: str, plugin: FakeUser) -> tuple[int, list[dict[str, Any]]]:
    assert world.h.http is not None
    url = f"{world.h.gateway_url}{PLUGIN}/bridge/v1/completion/agent/{agent}"
    async with world.h.http.post(url, data=json.dumps(BRIDGE_BODY), headers=plugin_headers(plugin)) as resp:
        raw = (await resp.read()).decode()
    return resp.status, [json.loads(chunk[6:]) for chunk in raw.split("\n\n") if chunk.startswith("data: ")]


def plugin_headers(plugin: FakeUser) -> dict[str, str]:
    return {"Mattermost-Plugin-ID": "com.example.caller", "Authorization": f"Bearer {plugin.token}"}


# ---- a stream outlives its connection's max age -------------------------------------------------


async def test_an_answer_streaming_for_longer_than_the_connection_max_age_completes(world: World) -> None:
    bot = await world.agent("patient")
    ada = world.mm.add_user("ada")
    dm = world.mm.add_direct_channel(ada, bot)
    world.openai.enqueue(FakeResponse.text(LONG_ANSWER, tokens=40, token_delay=0.1), FakeResponse.text("Long"))
    post = await world.mm.user_posts(ada, dm, "a long answer please")
    reply = await world.answer_to(post)
    assert reply["props"]["agents_stream_status"] == "done"
    assert reply["message"] == LONG_ANSWER


async def test_a_bridge_stream_for_longer_than_the_connection_max_age_completes(world: World) -> None:
    await world.agent("bridged")
    plugin = world.mm.add_user("long-plugin-bot", is_bot=True)
    world.openai.enqueue(FakeResponse.text(LONG_ANSWER, tokens=40, token_delay=0.1))
    status, events = await bridge_events(world, "bridged", plugin)
    assert status == 200
    assert "".join(e["Value"] for e in events if e["Type"] == 0) == LONG_ANSWER
    assert [e["Type"] for e in events][-2:] == [7, 1]  # usage, then the end: no error event


# ---- the post's status follows the answer, not its title ----------------------------------------


async def has_title(world: World, user: FakeUser, title: str) -> bool:
    """Whether one of the user's conversations (GET /ai_threads) has this title."""
    status, threads = await world.h.get("/ai_threads", user=user)
    assert status == 200
    return title in [t["title"] for t in threads]


async def test_a_new_conversation_is_final_as_soon_as_its_answer_ends_while_its_title_is_generated(
    world: World,
) -> None:
    bot = await world.agent("namer")
    bea = world.mm.add_user("bea")
    dm = world.mm.add_direct_channel(bea, bot)
    title_held = asyncio.Event()
    world.openai.enqueue(FakeResponse.text("Here you go.", tokens=3), FakeResponse.text("Held Title", hold=title_held))
    post = await world.mm.user_posts(bea, dm, "name this chat")
    try:
        # The title call gets no answer until the post is final.
        reply = await world.answer_to(post)
        assert reply["props"]["agents_stream_status"] == "done" and reply["message"] == "Here you go."
    finally:
        title_held.set()
    # The title is still generated, after the answer.
    await poll(lambda: has_title(world, bea, "Held Title"), within=10)


async def test_a_stopped_answer_is_final_at_once_while_its_title_is_generated(world: World) -> None:
    bot = await world.agent("stoppable")
    cal = world.mm.add_user("cal")
    dm = world.mm.add_direct_channel(cal, bot)
    title_held = asyncio.Event()
    long = "story " * 60
    world.openai.enqueue(
        FakeResponse.text(long, tokens=60, token_delay=0.1), FakeResponse.text("Stopped Story", hold=title_held)
    )
    post = await world.mm.user_posts(cal, dm, "a long story please")
    [reply] = await poll(lambda: world.replies_to(post["id"]))
    live = world.mm.post(reply["id"])
    await poll(lambda: live["message"].strip(), within=10)
    try:
        status, _, _ = await world.h.request("POST", f"/post/{reply['id']}/stop", user=cal)
        assert status == 200
        final = await world.final(reply["id"])
        assert final["props"]["agents_stream_status"] == "stopped"
        assert final["message"] and len(final["message"]) < len(long)
    finally:
        title_held.set()
    await poll(lambda: has_title(world, cal, "Stopped Story"), within=10)


# ---- a client cancelling a stream is normal: no error in any log --------------------------------


def errors_since(world: World, marks: dict[str, int]) -> list[str]:
    """Error lines and tracebacks the services logged after ``marks`` (lines per service)."""
    return [
        f"{service}: {line}"
        for service, lines in world.h.logs.items()
        for line in lines[marks.get(service, 0) :]
        if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line
    ]


def logged_since(world: World, marks: dict[str, int], service: str, message: str) -> bool:
    return any(f'"msg": "{message}"' in line for line in world.h.logs.get(service, [])[marks.get(service, 0) :])


def log_marks(world: World) -> dict[str, int]:
    return {service: len(lines) for service, lines in world.h.logs.items()}


async def test_a_client_cancelling_a_stream_it_stopped_reading_leaves_no_error_in_the_logs(world: World) -> None:
    dee = world.mm.add_user("dee")
    marks = log_marks(world)
    served = world.openai.completed
    # About 300 KB of answer, written faster than this client reads (it reads one message, then
    # nothing): the llm ends up waiting to send, with its queue of provider events full.
    world.openai.enqueue(FakeResponse.text("x" * 300_000, tokens=300, token_delay=0.002))
    request = llm_pb2.StreamCompleteRequest(
        request=llm_pb2.CompletionRequest(
            service_id=world.service_id,
            messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="a lot of x")])],
        ),
    )
    # No BDP probing: the client's receive window stays small instead of absorbing the answer.
    options = [("grpc.http2.bdp_probe", 0)]
    assert world.h.cluster is not None
    async with grpc.aio.insecure_channel(world.h.cluster.address("llm"), options=options) as channel:
        call = llm_pb2_grpc.LLMStub(channel).StreamComplete(
            request, metadata=world.h.metadata(Identity(user_id=dee.id))
        )
        await call.read()
        # The whole answer left the provider: what this client has not read waits in the llm.
        await poll(lambda: world.openai.completed > served, within=20)
        call.cancel()

    await poll(
        lambda: logged_since(world, marks, "llm", "stream cancelled") or errors_since(world, marks),
        within=10,
    )
    assert errors_since(world, marks) == []


async def test_a_plugin_hanging_up_on_a_bridge_stream_leaves_no_error_in_the_logs(world: World) -> None:
    await world.agent("hungup")
    plugin = world.mm.add_user("impatient-plugin-bot", is_bot=True)
    marks = log_marks(world)
    world.openai.enqueue(FakeResponse.text(LONG_ANSWER, tokens=40, token_delay=0.05))
    assert world.h.http is not None
    url = f"{world.h.gateway_url}{PLUGIN}/bridge/v1/completion/agent/hungup"
    async with world.h.http.post(url, data=json.dumps(BRIDGE_BODY), headers=plugin_headers(plugin)) as resp:
        assert resp.status == 200
        await resp.content.readany()  # the first event: the stream runs
        resp.close()  # hang up mid-stream

    await poll(
        lambda: logged_since(world, marks, "gateway", "client disconnected") or errors_since(world, marks),
        within=10,
    )
    # The gateway gave up its llm stream, which gave up the provider's.
    await world.openai.wait_for_disconnect(within=10)
    await poll(lambda: logged_since(world, marks, "llm", "stream cancelled") or errors_since(world, marks))
    assert errors_since(world, marks) == []


def cancellations_since(world: World, marks: dict[str, int]) -> int:
    start = marks.get("llm", 0)
    return sum('"msg": "stream cancelled"' in line for line in world.h.logs.get("llm", [])[start:])


async def test_bridge_streams_read_to_their_end_finish_in_the_llm_without_a_cancellation(world: World) -> None:
    await world.agent("finisher")
    plugin = world.mm.add_user("finishing-plugin-bot", is_bot=True)
    fay = world.mm.add_user("fay")
    marks = log_marks(world)
    # Before the fix a finished stream was cancelled right after Done, racing the llm's own end:
    # enough streams for that race to show.
    for _ in range(60):
        world.openai.enqueue(FakeResponse.text("all of it", tokens=3))
        status, events = await bridge_events(world, "finisher", plugin)
        assert status == 200
        assert [e["Type"] for e in events][-2:] == [7, 1]  # usage, then the end

    # A barrier: a stream this test does cancel, logged by the llm after any earlier one.
    world.openai.enqueue(FakeResponse.text(LONG_ANSWER, tokens=40, token_delay=0.05))
    request = llm_pb2.StreamCompleteRequest(
        request=llm_pb2.CompletionRequest(
            service_id=world.service_id,
            messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="go on")])],
        ),
    )
    assert world.h.cluster is not None
    async with grpc.aio.insecure_channel(world.h.cluster.address("llm")) as channel:
        call = llm_pb2_grpc.LLMStub(channel).StreamComplete(
            request, metadata=world.h.metadata(Identity(user_id=fay.id))
        )
        await call.read()
        call.cancel()
    await poll(lambda: cancellations_since(world, marks) or errors_since(world, marks), within=10)

    assert errors_since(world, marks) == []
    assert cancellations_since(world, marks) == 1  # the barrier's alone


# ---- SIGTERM after the answer: the answer stays done (restarts the llm: keep this last) --------


async def test_sigterm_on_the_llm_while_a_title_is_generated_leaves_the_finished_answer_done(world: World) -> None:
    bot = await world.agent("survivor")
    eve = world.mm.add_user("eve")
    dm = world.mm.add_direct_channel(eve, bot)
    title_held = asyncio.Event()
    world.openai.enqueue(FakeResponse.text("All done here.", tokens=3), FakeResponse.text("Never", hold=title_held))
    post = await world.mm.user_posts(eve, dm, "answer, then the service stops")
    # The title call reaching the provider means the answer has ended.
    await poll(lambda: world.openai.queued == 0, within=20)
    cluster = world.h.cluster
    assert cluster is not None
    try:
        assert await cluster.stop_service("llm", grace=30) == 0
        reply = await world.answer_to(post)
        assert reply["props"]["agents_stream_status"] == "done"
        assert reply["message"] == "All done here."
    finally:
        title_held.set()
        await cluster.start_service("llm")
        await cluster.wait_healthy(names=("llm",))
