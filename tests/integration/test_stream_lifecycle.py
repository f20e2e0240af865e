"""Streams over their whole life, through the real cluster: a stream outlives its gRPC
connection's max age, an answer is final as soon as it ends whatever becomes of its title, and a
client that cancels a stream leaves no error in any service's log.

Every gRPC connection in this cluster is asked to go away (GOAWAY) after one second.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World

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
