"""Conversations that call the REAL tools service: Mattermost tools run as the requesting user,
web search results reach the answer as citations, the per-conversation search cap, and a tool
that asks runs once the requester accepts. The fake search API listens on 127.0.0.2, which the
operator allows to resolve privately (as in test_tools_service)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import json_format

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.fakes.search import FakeResult, FakeSearch
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.llm_conversation_support import World, collect, done_reason, text_of
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEARCH_HOST = "127.0.0.2"


class ToolsWorld(World):
    """The conversation world with the real tools service and web search configured."""

    search: FakeSearch

    async def enable_web_search(self) -> None:
        """Brave search in the plugin config, kept when services and agents are created later."""
        document = {
            "services": [],
            "enableChannelMentionToolCalling": True,
            "webSearch": {
                "enabled": True,
                "provider": "brave",
                "brave": {"apiKey": self.search.brave_key, "apiURL": f"{self.search.base_url}/res/v1/web/search"},
            },
        }
        config = json_format.ParseDict(document, registry_pb2.PluginConfig(), ignore_unknown_fields=True)
        admin = self.md(self.admin, admin=True)
        async with self.h.channel("index") as channel:
            await registry_pb2_grpc.RegistryStub(channel).UpdatePluginConfig(
                registry_pb2.UpdatePluginConfigRequest(config=config), metadata=admin
            )
        # As an admin may choose: searches run unasked, posting always asks the requester.
        async with self.h.channel("tools") as channel:
            for name, approval in (
                ("web_search", tools_pb2.APPROVAL_POLICY_AUTO),
                ("create_post", tools_pb2.APPROVAL_POLICY_ASK),
            ):
                policy = tools_pb2.ToolPolicy(tool_name=name, enabled=True, approval=approval)
                await tools_pb2_grpc.ToolsStub(channel).SetPolicy(
                    tools_pb2.SetPolicyRequest(policy=policy), metadata=admin
                )

    async def wait_for_web_search(self, agent: registry_pb2.Agent) -> None:
        """Until the tools service offers web_search (it saw the config)."""
        user = self.mm.add_user(f"probe{agent.username}")
        context = tools_pb2.ToolContext(user_id=user.id, agent_id=agent.id, is_direct_message=True)
        async with self.h.channel("tools") as channel:
            stub = tools_pb2_grpc.ToolsStub(channel)

            async def offered() -> bool:
                reply = await stub.ListTools(tools_pb2.ListToolsRequest(context=context), metadata=self.md(user))
                return "web_search" in {t.name for t in reply.tools}

            await poll(offered, within=15, interval=0.1, message="the tools service never offered web_search")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[ToolsWorld]:
    async with FakeOpenAI() as openai, FakeSearch(host=SEARCH_HOST) as search:
        env = {"AGENTS_TOOLS_PRIVATE_ALLOWED_HOSTNAMES": SEARCH_HOST, "AGENTS_INDEX_LICENSE": "enterprise"}
        async with ClusterHarness(postgres, env=env) as harness:
            w = ToolsWorld(harness, openai, None)  # type: ignore[arg-type]
            w.search = search
            await w.enable_web_search()
            await w.setup()
            yield w
            await w.channel.close()


def tool_updates(events: list[llm_pb2.ConversationEvent]) -> list[llm_pb2.ToolCallState]:
    return [e.tool_update for e in events if e.WhichOneof("event") == "tool_update"]


async def test_read_channel_in_a_conversation_runs_as_the_requester_and_leaks_nothing(world: ToolsWorld) -> None:
    alice, bob = world.mm.add_user("ralice"), world.mm.add_user("rbob")
    team = world.mm.add_team("readers")
    secret = world.mm.add_channel(team.id, "hidden", type="P")
    world.mm.add_member(team, bob)
    world.mm.add_member(secret, bob)
    world.mm.add_post(bob, secret, "codename bluebird ships in May")
    agent = await world.agent("readerbot", auto_enable_new_mcp_tools=True)
    world.openai.enqueue(
        FakeResponse.tool_call("read_channel", json.dumps({"channel_id": secret.id}), call_id="call_read"),
        FakeResponse.text("I cannot read that channel."),
        FakeResponse.text("Title"),
    )
    request, _ = world.dm(alice, agent, "what is in the hidden channel?")
    events = await collect(world.conversations.Respond(request, metadata=world.md(alice)))
    [update] = tool_updates(events)
    assert update.call.name == "read_channel" and update.status == "error"
    assert "not available" not in update.result and secret.id in update.result  # the tools service refused
    assert "bluebird" not in str(events)
    follow_up = next(r for r in world.openai.requests if "call_read" in json.dumps(r.body))
    assert "bluebird" not in json.dumps(follow_up.body)
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN


async def test_web_search_results_reach_the_answer_as_citations(world: ToolsWorld) -> None:
    cara = world.mm.add_user("cara")
    world.search.results["mattermost agents release"] = [
        FakeResult("Agents 2.0 released", "https://example.com/agents-2", "The new agents plugin is out.")
    ]
    agent = await world.agent("searchbot")
    await world.wait_for_web_search(agent)
    world.openai.enqueue(
        FakeResponse.tool_call("web_search", json.dumps({"query": "mattermost agents release"}), call_id="call_s"),
        FakeResponse.text("Agents 2.0 is out."),
        FakeResponse.text("Title"),
    )
    request, _ = world.dm(cara, agent, "what's new with agents?")
    events = await collect(world.conversations.Respond(request, metadata=world.md(cara)))
    assert [u.status for u in tool_updates(events)] == ["success"]
    annotations = [e.stream.annotation for e in events if e.stream.WhichOneof("event") == "annotation"]
    assert [(a.url, a.title) for a in annotations] == [("https://example.com/agents-2", "Agents 2.0 released")]
    assert text_of(events) == "Agents 2.0 is out."
    got = await world.conversations.GetConversation(
        llm_pb2.GetConversationRequest(id=events[0].conversation_id), metadata=world.md(cara)
    )
    answer = got.conversation.turns[-1]
    citations = [b for b in answer.content if b["type"] == "annotations"]
    assert citations and citations[0]["citations"][0]["url"] == "https://example.com/agents-2"


async def test_a_fourth_web_search_in_one_conversation_is_refused(world: ToolsWorld) -> None:
    dina = world.mm.add_user("dina")
    agent = await world.agent("curiousbot")
    await world.wait_for_web_search(agent)
    before = len(world.search.calls)
    queries = ["first topic", "second topic", "third topic", "fourth topic"]
    world.openai.enqueue(
        *(
            FakeResponse.tool_call("web_search", json.dumps({"query": q}), call_id=f"call_q{n}")
            for n, q in enumerate(queries)
        ),
        FakeResponse.text("That is all I could search."),
        FakeResponse.text("Title"),
    )
    request, _ = world.dm(dina, agent, "search four things")
    events = await collect(world.conversations.Respond(request, metadata=world.md(dina)))
    statuses = [u.status for u in tool_updates(events)]
    assert statuses == ["success", "success", "success", "error"]
    assert [c.query for c in world.search.calls[before:]] == queries[:3]
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN


async def test_a_tool_that_asks_runs_in_the_tools_service_once_the_requester_accepts(world: ToolsWorld) -> None:
    emil = world.mm.add_user("emil")
    team = world.mm.add_team("posting")
    channel = world.mm.add_channel(team.id, "announcements")
    world.mm.add_member(team, emil)
    world.mm.add_member(channel, emil)
    agent = await world.agent("posterbot", auto_enable_new_mcp_tools=True)
    arguments = {"channel_id": channel.id, "message": "Standup moved to 10:00"}
    world.openai.enqueue(
        FakeResponse.tool_call("create_post", json.dumps(arguments), call_id="call_post"),
        FakeResponse.text("Title"),
        FakeResponse.text("Posted it."),
    )
    request, _ = world.dm(emil, agent, "announce the standup move")
    events = await collect(world.conversations.Respond(request, metadata=world.md(emil)))
    assert done_reason(events) == llm_pb2.STOP_REASON_AWAITING_APPROVAL
    assert not [p for p in world.mm.state.posts.values() if p["message"] == "Standup moved to 10:00"]
    await poll(lambda: world.openai.queued == 1)  # the title (after the answer) took its scripted answer

    decision = llm_pb2.ToolDecisionRequest(post_id=request.response_post_id, accepted_tool_ids=["call_post"])
    resumed = await collect(world.conversations.ToolDecision(decision, metadata=world.md(emil)))
    [update] = tool_updates(resumed)
    assert update.status == "success" and "Created post" in update.result
    [created] = [p for p in world.mm.state.posts.values() if p["message"] == "Standup moved to 10:00"]
    assert created["channel_id"] == channel.id and created["props"]["ai_generated_by"] == emil.id
    assert text_of(resumed) == "Posted it." and done_reason(resumed) == llm_pb2.STOP_REASON_END_TURN
