"""The conversation loop end to end over gRPC: real llm/index processes, real PostgreSQL, a fake
OpenAI-compatible upstream, a fake Mattermost, and a fake Tools server (real gRPC)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.llm.conversations.approvals import FAILURE_CAP_INSTRUCTION
from tests.fakes.openai_script import FakeResponse
from tests.fakes.tools_grpc import FakeTool
from tests.harness import SessionPostgres
from tests.integration.llm_conversation_support import World, collect, done_reason, kinds, started_world, text_of
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with started_world(postgres) as w:
        yield w


async def test_a_dm_answer_streams_start_text_and_done_then_gets_its_title_and_persists_the_turns(
    world: World,
) -> None:
    alice = world.mm.add_user("alice")
    agent = await world.agent("helper")
    world.openai.enqueue(
        FakeResponse.text("Hello Alice, here is the answer.", tokens=4), FakeResponse.text("Greeting Alice")
    )
    request, _ = world.dm(alice, agent, "hi there")
    asked = len(world.openai.requests)

    events = await collect(world.conversations.Respond(request, metadata=world.md(alice)))

    assert kinds(events)[0] == "control" and events[0].control == "start"
    assert text_of(events) == "Hello Alice, here is the answer."
    assert "title" not in kinds(events)  # generated once the answer has ended, on its own
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN
    assert all(e.post_id == request.response_post_id and e.conversation_id for e in events)
    system = world.openai.requests[asked].body["messages"][0]["content"]
    assert "Helper" in system and "@alice" in system
    assert "+0100" in system or "+0200" in system  # the time is given in the user's timezone

    async def titled() -> llm_pb2.GetConversationResponse | None:
        got = await world.conversations.GetConversation(
            llm_pb2.GetConversationRequest(id=events[0].conversation_id), metadata=world.md(alice)
        )
        return got if got.conversation.title == "Greeting Alice" else None

    got = await poll(titled, within=10)
    assert [t.role for t in got.conversation.turns] == ["user", "assistant"]
    assert got.conversation.turns[1].post_id == request.response_post_id
    listed = await world.conversations.ListConversations(llm_pb2.ListConversationsRequest(), metadata=world.md(alice))
    assert [c.id for c in listed.conversations] == [events[0].conversation_id]


async def test_a_request_without_a_timezone_gets_the_time_in_the_zone_mattermost_shows_the_user(
    world: World,
) -> None:
    zoe = world.mm.add_user("zoe")
    # No useAutomaticTimezone: Mattermost's default ("true") makes the automatic zone the user's.
    world.mm.state.users[zoe.id]["timezone"] = {"automaticTimezone": "Asia/Tokyo", "manualTimezone": ""}
    agent = await world.agent("clockbot")
    world.openai.enqueue(FakeResponse.text("Noted."), FakeResponse.text("Title"))
    request, _ = world.dm(zoe, agent, "what time is it?")
    request.context.user_timezone = ""
    asked = len(world.openai.requests)

    events = await collect(world.conversations.Respond(request, metadata=world.md(zoe)))

    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN
    assert "+0900" in world.openai.requests[asked].body["messages"][0]["content"]


async def test_a_second_respond_for_the_same_post_gets_already_exists(world: World) -> None:
    bob = world.mm.add_user("bob")
    agent = await world.agent("dupbot")
    world.openai.enqueue(FakeResponse.text("Once."), FakeResponse.text("Title"))
    request, _ = world.dm(bob, agent, "once please")
    await collect(world.conversations.Respond(request, metadata=world.md(bob)))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(world.conversations.Respond(request, metadata=world.md(bob)))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_a_user_without_access_is_refused_before_the_provider_is_called(world: World) -> None:
    carol = world.mm.add_user("carol")
    agent = await world.agent("lockedbot", user_access_level=registry_pb2.ACCESS_LEVEL_NONE)
    request, _ = world.dm(carol, agent, "let me in")
    before = len(world.openai.requests)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(world.conversations.Respond(request, metadata=world.md(carol)))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(world.openai.requests) == before


async def test_a_tool_that_asks_pauses_and_runs_as_the_requester_once_accepted(world: World) -> None:
    dave, eve = world.mm.add_user("dave"), world.mm.add_user("eve")
    world.tools.add(FakeTool("lookup", auto_approved=False, result="42 widgets"))
    agent = await world.agent("toolbot")
    world.openai.enqueue(
        FakeResponse.tool_call("lookup", '{"query": "widgets"}', call_id="call_lookup"),
        FakeResponse.text("Title"),
        FakeResponse.text("There are 42 widgets.", tokens=3),
    )
    request, _ = world.dm(dave, agent, "how many widgets?")
    events = await collect(world.conversations.Respond(request, metadata=world.md(dave)))
    assert done_reason(events) == llm_pb2.STOP_REASON_AWAITING_APPROVAL
    [approval] = [e.approval_required for e in events if e.WhichOneof("event") == "approval_required"]
    assert approval.stage == "call" and [c.call.id for c in approval.calls] == ["call_lookup"]
    assert approval.calls[0].status == "pending"
    await poll(lambda: world.openai.queued == 1)  # the title (after the answer) took its scripted answer

    decision = llm_pb2.ToolDecisionRequest(post_id=request.response_post_id, accepted_tool_ids=["call_lookup"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(world.conversations.ToolDecision(decision, metadata=world.md(eve)))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [x for x in world.tools.executions if x.tool_name == "lookup"] == []

    resumed = await collect(world.conversations.ToolDecision(decision, metadata=world.md(dave)))
    assert kinds(resumed)[0] == "tool_update" and resumed[0].tool_update.status == "success"
    assert resumed[0].tool_update.result == "42 widgets"
    assert [e.control for e in resumed if e.WhichOneof("event") == "control"] == ["continue"]
    assert text_of(resumed) == "There are 42 widgets."
    assert done_reason(resumed) == llm_pb2.STOP_REASON_END_TURN
    [run] = [x for x in world.tools.executions if x.tool_name == "lookup"]
    assert run.user_id == dave.id and run.arguments == {"query": "widgets"}
    follow_up = json.dumps(world.openai.requests[-1].body["messages"])
    assert "42 widgets" in follow_up

    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await collect(world.conversations.ToolDecision(decision, metadata=world.md(dave)))
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_three_failed_tool_attempts_make_the_model_explain_without_tools(world: World) -> None:
    frank = world.mm.add_user("frank")
    world.tools.add(FakeTool("flaky", auto_approved=True, result="upstream timed out", is_error=True))
    agent = await world.agent("flakybot")
    world.openai.enqueue(
        *(FakeResponse.tool_call("flaky", "{}", call_id=f"call_{i}") for i in range(3)),
        FakeResponse.text("The lookup keeps timing out; shall I try later?"),
        FakeResponse.text("Title"),
    )
    request, _ = world.dm(frank, agent, "use the flaky tool")
    events = await collect(world.conversations.Respond(request, metadata=world.md(frank)))
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN
    assert [e.tool_update.status for e in events if e.WhichOneof("event") == "tool_update"] == ["error"] * 3
    assert len([x for x in world.tools.executions if x.tool_name == "flaky"]) == 3
    explain = next(r for r in reversed(world.openai.requests) if FAILURE_CAP_INSTRUCTION in json.dumps(r.body))
    assert "tools" not in explain.body


async def test_stop_from_another_connection_keeps_the_text_and_ends_stopped(world: World) -> None:
    gina, hank = world.mm.add_user("gina"), world.mm.add_user("hank")
    agent = await world.agent("slowbot")
    world.openai.enqueue(FakeResponse.text("word " * 40, tokens=40, token_delay=0.1), FakeResponse.text("Title"))
    request, _ = world.dm(gina, agent, "tell me a long story")
    call = world.conversations.Respond(request, metadata=world.md(gina))
    events: list[llm_pb2.ConversationEvent] = []
    async for response in call:
        events.append(response.event)
        if response.event.stream.WhichOneof("event") == "text_delta":
            break
    stop = llm_pb2.StopRequest(post_id=request.response_post_id)
    async with world.h.channel("llm") as other:
        stub = llm_pb2_grpc.ConversationsStub(other)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Stop(stop, metadata=world.md(hank))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        await stub.Stop(stop, metadata=world.md(gina))
    events += [response.event async for response in call]
    assert done_reason(events) == llm_pb2.STOP_REASON_STOPPED
    partial = text_of(events)
    assert partial and len(partial) < len("word " * 40)
    got = await world.conversations.GetConversation(
        llm_pb2.GetConversationRequest(id=events[0].conversation_id), metadata=world.md(gina)
    )
    assert got.conversation.turns[-1].content[0]["text"] == partial


async def test_stop_on_the_same_connection_ends_the_stream_stopped(world: World) -> None:
    ivy = world.mm.add_user("ivy")
    agent = await world.agent("slowbot2")
    world.openai.enqueue(FakeResponse.text("more " * 40, tokens=40, token_delay=0.1), FakeResponse.text("Title"))
    request, _ = world.dm(ivy, agent, "go on")
    call = world.conversations.Respond(request, metadata=world.md(ivy))
    events: list[llm_pb2.ConversationEvent] = []
    async for response in call:
        events.append(response.event)
        if response.event.stream.WhichOneof("event") == "text_delta":
            await world.conversations.Stop(
                llm_pb2.StopRequest(post_id=request.response_post_id), metadata=world.md(ivy)
            )
            break
    events += [response.event async for response in call]
    assert done_reason(events) == llm_pb2.STOP_REASON_STOPPED


async def test_regenerate_rewrites_the_answer_for_the_requester_only(world: World) -> None:
    jack, kim = world.mm.add_user("jack"), world.mm.add_user("kim")
    agent = await world.agent("regenbot")
    world.openai.enqueue(FakeResponse.text("First try."), FakeResponse.text("Title"), FakeResponse.text("Second try."))
    request, _ = world.dm(jack, agent, "answer twice")
    first = await collect(world.conversations.Respond(request, metadata=world.md(jack)))
    await poll(lambda: world.openai.queued == 1)  # the title (after the answer) took its scripted answer
    regen = llm_pb2.RegenerateRequest(post_id=request.response_post_id)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(world.conversations.Regenerate(regen, metadata=world.md(kim)))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    second = await collect(world.conversations.Regenerate(regen, metadata=world.md(jack)))
    assert second[0].control == "start" and text_of(second) == "Second try."
    assert done_reason(second) == llm_pb2.STOP_REASON_END_TURN
    got = await world.conversations.GetConversation(
        llm_pb2.GetConversationRequest(id=first[0].conversation_id), metadata=world.md(jack)
    )
    assert [t.role for t in got.conversation.turns] == ["user", "assistant"]
    assert got.conversation.turns[1].content[0]["text"] == "Second try."
    regenerated = json.dumps(world.openai.requests[-1].body["messages"])
    assert "answer twice" in regenerated and "First try." not in regenerated


async def test_thread_analysis_streams_a_summary_with_its_fixed_title(world: World) -> None:
    lea, max_ = world.mm.add_user("lea"), world.mm.add_user("max")
    agent = await world.agent("analyst")
    team = world.mm.add_team("analysis")
    channel = world.mm.add_channel(team.id, "planning")
    for user in (lea, max_):
        world.mm.add_member(team, user)
        world.mm.add_member(channel, user)
    root = world.mm.add_post(max_, channel, "Should we ship on Friday?")
    world.mm.add_post(lea, channel, "Only if QA signs off.", root_id=root["id"])
    bot = world.mm.state.users[agent.bot_user_id]
    dm = world.mm.state.direct_channel(lea.id, bot["id"])
    reply = world.mm.state.create_post(bot["id"], dm["id"], "")
    world.openai.enqueue(FakeResponse.text("Ship Friday if QA signs off."))
    request = llm_pb2.AnalyzeRequest(
        context=llm_pb2.ConversationContext(user_id=lea.id, agent_id=agent.id, channel_id=channel.id),
        post_id=root["id"],
        analysis_type="summarize_thread",
        response_post_id=reply["id"],
    )
    events = await collect(world.conversations.Analyze(request, metadata=world.md(lea)))
    assert [e.title for e in events if e.WhichOneof("event") == "title"] == ["Thread Summary"]
    assert text_of(events) == "Ship Friday if QA signs off."
    body = world.openai.requests[-1].body
    assert "tools" not in body
    assert "max: Should we ship on Friday?" in json.dumps(body) and "lea: Only if QA signs off." in json.dumps(body)


async def test_a_channel_summary_covers_the_range_and_cannot_be_regenerated(world: World) -> None:
    nina = world.mm.add_user("nina")
    agent = await world.agent("summarizer")
    team = world.mm.add_team("summaries")
    channel = world.mm.add_channel(team.id, "general")
    world.mm.add_member(team, nina)
    world.mm.add_member(channel, nina)
    now = int(time.time() * 1000)
    world.mm.add_post(nina, channel, "ancient history", create_at=now - 20 * 24 * 3600 * 1000)
    # Mattermost's clock runs ahead of ours: its newest post must still be in a range with no end.
    world.mm.add_post(nina, channel, "fresh news", create_at=now + 5000)
    bot = world.mm.state.users[agent.bot_user_id]
    dm = world.mm.state.direct_channel(nina.id, bot["id"])
    reply = world.mm.state.create_post(bot["id"], dm["id"], "")
    ctx = llm_pb2.ConversationContext(user_id=nina.id, agent_id=agent.id, channel_id=channel.id)
    too_long = llm_pb2.SummarizeRequest(
        context=ctx,
        preset_prompt="summarize_range",
        start_time=now - 15 * 24 * 3600 * 1000,
        response_post_id=reply["id"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await collect(world.conversations.Summarize(too_long, metadata=world.md(nina)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    world.openai.enqueue(FakeResponse.text("Fresh news only."))
    request = llm_pb2.SummarizeRequest(
        context=ctx, preset_prompt="summarize_range", start_time=now - 3600 * 1000, response_post_id=reply["id"]
    )
    events = await collect(world.conversations.Summarize(request, metadata=world.md(nina)))
    assert text_of(events) == "Fresh news only." and done_reason(events) == llm_pb2.STOP_REASON_END_TURN
    sent = json.dumps(world.openai.requests[-1].body)
    assert "fresh news" in sent and "ancient history" not in sent
    with pytest.raises(grpc.aio.AioRpcError) as regen:
        await collect(
            world.conversations.Regenerate(llm_pb2.RegenerateRequest(post_id=reply["id"]), metadata=world.md(nina))
        )
    assert regen.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_an_image_attached_to_the_post_reaches_a_vision_agent(world: World) -> None:
    otto = world.mm.add_user("otto")
    agent = await world.agent("visionbot", enable_vision=True)
    image = world.mm.add_file(otto, "chart.png", PNG, "image/png")
    world.openai.enqueue(FakeResponse.text("A chart."), FakeResponse.text("Title"))
    request, _ = world.dm(otto, agent, "what is this?", file_ids=[image["id"]])
    events = await collect(world.conversations.Respond(request, metadata=world.md(otto)))
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN
    sent = next(
        r for r in world.openai.requests if "what is this?" in json.dumps(r.body) and "image" in json.dumps(r.body)
    )
    assert "data:image/png;base64," in json.dumps(sent.body)
