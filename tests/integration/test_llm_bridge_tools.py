"""Bridge completions with ``allowed_tools``: the model (the fake OpenAI, scripted) calls a remote
MCP tool (a real SDK server), which runs as the named user without asking, and the answer follows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.integration import test_mcp_remote
from tests.integration.test_mcp_remote import PLUGIN_HEADERS, World, new_agent, selection

pytestmark = pytest.mark.asyncio(loop_scope="session")

world = test_mcp_remote.world  # the same cluster, MCP servers and plugin credential (this module gets its own)
PATH = "/bridge/v1/completion/agent/{agent}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fake(world: World) -> AsyncIterator[FakeOpenAI]:
    """The agents' service ("svc") answered by the fake OpenAI."""
    async with FakeOpenAI() as fake:
        service = {
            "id": "svc",
            "name": "svc",
            "type": "openaicompatible",
            "apiURL": fake.base_url,
            "apiKey": fake.api_key,
            "defaultModel": "gpt-4o",
        }
        document = {"services": [service], "mcp": {"servers": world.servers()}}
        status, body, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=document)
        assert status == 200, body
        yield fake


def body(user_id: str, *tools: str) -> dict[str, Any]:
    return {"posts": [{"role": "user", "message": "Echo something"}], "user_id": user_id, "allowed_tools": list(tools)}


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


async def test_an_allowed_tool_runs_as_the_user_without_asking_and_the_answer_follows(
    world: World, fake: FakeOpenAI
) -> None:
    ivy = world.user("bridge-ivy")
    # jira's tools ask before they run in a conversation (no tool_configs): the bridge runs them.
    await new_agent(world, "bridgetools", ivy, enabledtools=selection((world.jira.url, "*")))
    fake.enqueue(
        FakeResponse.tool_call("echo", json.dumps({"text": "from the bridge"})),
        FakeResponse.text("The tool said: from the bridge", tokens=2),
    )
    before, calls = len(fake.requests), world.jira.methods["tools/call"]
    status, answer, _ = await world.h.request(
        "POST",
        PATH.format(agent="bridgetools") + "/nostream",
        json_body=body(ivy.id, "echo"),
        headers=PLUGIN_HEADERS,
    )
    assert (status, answer) == (200, {"completion": "The tool said: from the bridge"})
    assert world.jira.methods["tools/call"] == calls + 1
    first, second = (r.body for r in fake.requests[before:])
    assert offered(first) == ["echo"]  # only the allowed tool, not the agent's others
    results = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in results] == ["from the bridge"]


async def test_a_streamed_completion_carries_the_answer_and_no_tool_calls(world: World, fake: FakeOpenAI) -> None:
    jo = world.user("bridge-jo")
    await new_agent(world, "bridgestream", jo, autoenablenewmcptools=True)
    fake.enqueue(
        FakeResponse.tool_call("add", json.dumps({"a": 2, "b": 3})),
        FakeResponse.text("2 + 3 = 5", tokens=1),
    )
    assert world.h.http is not None
    url = f"{world.h.gateway_url}/plugins/mattermost-ai{PATH.format(agent='bridgestream')}"
    async with world.h.http.post(url, data=json.dumps(body(jo.id, "add")), headers=PLUGIN_HEADERS) as resp:
        assert resp.status == 200
        raw = (await resp.read()).decode()
    events = [json.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: ")]
    assert "".join(e["Value"] for e in events if e["Type"] == 0) == "2 + 3 = 5"
    assert 3 not in {e["Type"] for e in events} and events[-1] == {"Type": 1, "Value": None}


@pytest.mark.parametrize("tool", ["read_post", "no_such_tool"])
async def test_a_tool_the_agent_does_not_offer_the_user_is_a_400_naming_allowed_tools(
    world: World, fake: FakeOpenAI, tool: str
) -> None:
    kim = world.user(f"bridge-kim-{tool}")
    agent = f"bridge-{tool.replace('_', '-')}"
    await new_agent(world, agent, kim, enabledtools=selection((world.jira.url, "echo"), ("embedded://mattermost", "*")))
    before = len(fake.requests)
    status, answer, _ = await world.h.request(
        "POST", PATH.format(agent=agent) + "/nostream", json_body=body(kim.id, "echo", tool), headers=PLUGIN_HEADERS
    )
    assert status == 400, answer
    assert "allowed_tools" in answer["error"] and tool in answer["error"]
    assert len(fake.requests) == before  # the model was never asked
