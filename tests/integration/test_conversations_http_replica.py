"""A gateway replica that serves HTTP only (``AGENTS_GATEWAY_LISTEN_FOR_POSTS=false``, the
documented HTTP-only replica) beside one that listens for posts: its routes know the agents and
the plugin configuration all the same. The listening replica answers the DMs; every route below is
called on the HTTP-only one.
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
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")


class TwoReplicas(World):
    """The module's world plus the URL of its HTTP-only gateway replica."""

    http_only = ""

    async def agent_via_http_only(self, username: str, **fields: Any) -> FakeUser:
        """A new agent created through the HTTP-only replica's route; returns once the listening
        replica has a socket for its bot."""
        body = {"username": username, "displayName": username.title(), "serviceID": self.service_id, **fields}
        status, agent, _ = await self.h.request(
            "POST", "/agents", user=self.admin, json_body=body, base_url=self.http_only
        )
        assert status == 201, agent
        await self.mm.wait_for_websockets(1, within=15, user_id=agent["botUserID"])
        return FakeUser(agent["botUserID"], username, "")

    async def on_http_only(self, method: str, path: str, user: FakeUser, body: Any = None) -> tuple[int, Any]:
        status, payload, _ = await self.h.request(method, path, user=user, json_body=body, base_url=self.http_only)
        return status, payload


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[TwoReplicas]:
    async with FakeOpenAI() as openai:
        async with ClusterHarness(postgres, env={**FAST, "AGENTS_INDEX_LICENSE": "enterprise"}) as harness:
            w = TwoReplicas(harness, openai)
            await w.setup()
            status, config = await harness.get("/admin/config", user=w.admin)
            assert status == 200
            status, body, _ = await harness.request(
                "PUT", "/admin/config", user=w.admin, json_body={**config, "allowUnsafeLinks": True}
            )
            assert status == 200, body
            # Started after the change: its routes wait for the configuration they start with.
            w.http_only = await harness.start_gateway(
                "gateway-http-only", env={"AGENTS_GATEWAY_LISTEN_FOR_POSTS": "false"}
            )
            yield w


async def test_an_http_only_replica_regenerates_an_agents_reply(world: TwoReplicas) -> None:
    bot = await world.agent_via_http_only("redo-http")
    gus = world.mm.add_user("gus")
    dm = world.mm.add_direct_channel(gus, bot)
    world.openai.enqueue(FakeResponse.text("First try."), FakeResponse.text("Title"))
    reply = await world.answer_to(await world.mm.user_posts(gus, dm, "answer twice"))
    assert reply["message"] == "First try."
    await poll(lambda: world.openai.queued == 0)  # the title (after the answer) took its scripted answer
    world.openai.enqueue(FakeResponse.text("Second try."))
    status, body = await world.on_http_only("POST", f"/post/{reply['id']}/regenerate", gus)
    assert status == 200, body
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Second try.", within=20)
    assert (await world.final(reply["id"]))["props"]["agents_stream_status"] == "done"


async def test_an_http_only_replica_stops_a_reply_the_other_replica_streams(world: TwoReplicas) -> None:
    bot = await world.agent_via_http_only("talker-http")
    fay = world.mm.add_user("fay")
    dm = world.mm.add_direct_channel(fay, bot)
    long = "story " * 60
    world.openai.enqueue(FakeResponse.text(long, tokens=60, token_delay=0.1), FakeResponse.text("Title"))
    post = await world.mm.user_posts(fay, dm, "a long story please")
    [reply] = await poll(lambda: world.replies_to(post["id"]))
    await poll(lambda: world.mm.post(reply["id"])["message"].strip(), within=10)
    status, body = await world.on_http_only("POST", f"/post/{reply['id']}/stop", fay)
    assert status == 200, body
    final = await world.final(reply["id"])
    assert final["props"]["agents_stream_status"] == "stopped" and len(final["message"]) < len(long)


async def test_an_http_only_replica_runs_a_tool_call_the_requester_accepts(world: TwoReplicas) -> None:
    bot = await world.agent_via_http_only("poster-http", autoEnableNewMCPTools=True)
    carol = world.mm.add_user("carol")
    town = world.town("tool-town", carol)
    dm = world.mm.add_direct_channel(carol, bot)
    note = "Standup moved to 10:00"
    world.openai.enqueue(
        FakeResponse.tool_call("create_post", json.dumps({"channel_id": town.id, "message": note}), call_id="call_1"),
        FakeResponse.text("Title"),
        FakeResponse.text("Posted the note."),
    )
    reply = await world.answer_to(await world.mm.user_posts(carol, dm, "tell the town standup moved to 10"))
    assert reply["props"]["agents_stream_status"] == "awaiting_approval"
    await poll(lambda: world.openai.queued == 1)  # the title (after the answer) took its scripted answer
    status, body = await world.on_http_only(
        "POST", f"/post/{reply['id']}/tool_call", carol, {"accepted_tool_ids": ["call_1"]}
    )
    assert status == 200, body
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Posted the note.", within=20)
    assert [p["channel_id"] for p in world.posts_with(note)] == [town.id]


async def test_a_reply_an_http_only_replica_starts_allows_links_as_the_plugin_config_says(world: TwoReplicas) -> None:
    await world.agent_via_http_only("summer-http")
    hal = world.mm.add_user("hal")
    town = world.town("summary-town", hal)
    root = world.mm.add_post(hal, town, "Should we ship on Friday?")
    world.openai.enqueue(FakeResponse.text("Ship on Friday."))
    status, body = await world.on_http_only(
        "POST", f"/post/{root['id']}/analyze?botUsername=summer-http", hal, {"analysis_type": "summarize_thread"}
    )
    assert status == 200, body
    summary = await world.final(body["postid"])
    assert summary["message"] == "Ship on Friday."
    assert "unsafe_links" not in summary["props"]
