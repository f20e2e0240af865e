"""The license comes from Mattermost (no override): an unlicensed server's cluster still completes
tool approvals, and a license uploaded, the Entry Edition rule, and a removal apply without a
restart, while an unreachable Mattermost keeps the last license read."""

from __future__ import annotations

import json
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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        env = {**FAST, "AGENTS_INDEX_LICENSE_REFRESH_SECONDS": "0.2"}
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


async def test_without_a_license_the_requester_can_approve_a_tool_call(world: World) -> None:
    bot = await world.agent("freeposter", auto_enable_new_mcp_tools=True)
    kim = world.mm.add_user("kim-free")
    town = world.town("free-town", kim)
    dm = world.mm.add_direct_channel(kim, bot)
    note = "Lunch at noon"
    world.openai.enqueue(
        FakeResponse.tool_call("create_post", json.dumps({"channel_id": town.id, "message": note}), call_id="c1"),
        FakeResponse.text("Title"),
        FakeResponse.text("Posted it."),
    )
    reply = await world.answer_to(await world.mm.user_posts(kim, dm, "tell the town lunch is at noon"))
    assert reply["props"]["agents_stream_status"] == "awaiting_approval"
    await poll(lambda: world.openai.queued == 1)  # the title took its scripted answer

    status, body, _ = await world.h.request(
        "POST", f"/post/{reply['id']}/tool_call", user=kim, json_body={"accepted_tool_ids": ["c1"]}
    )
    assert status == 200, body
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Posted it.", within=20)
    [created] = world.posts_with(note)
    assert created["channel_id"] == town.id


async def _agents_header(world: World, admin: FakeUser) -> str | None:
    status, _, headers = await world.h.request("GET", "/agents", user=admin)
    assert status == 200
    return headers.get("X-Agent-Active-Count")


async def test_the_license_follows_mattermost_without_a_restart(world: World) -> None:
    mm = world.mm
    admin = mm.add_user("lic-admin", roles="system_user system_admin")
    calls = mm.add_user("calls", is_bot=True)
    team = mm.add_team("lic-team")
    town = mm.add_channel(team.id, "lic-town")
    for user in (admin, calls):
        mm.add_member(team, user)
        mm.add_member(town, user)
    empty = mm.add_file(calls, "t.vtt", b"WEBVTT\n", "text/vtt")
    recording = mm.add_post(calls, town, "transcript", file_ids=[empty["id"]])

    async def licensed() -> bool:
        # The index (the count header of unlicensed clusters) and the gateway (a license guard that
        # precedes a 400 for the empty transcript) must agree.
        status, _, _ = await world.h.request(
            "POST", f"/post/{recording['id']}/summarize_transcription?botUsername=freeposter", user=admin
        )
        header = await _agents_header(world, admin)
        assert status in (400, 403)
        return status == 400 and header is None

    async def unlicensed() -> bool:
        status, _, _ = await world.h.request(
            "POST", f"/post/{recording['id']}/summarize_transcription?botUsername=freeposter", user=admin
        )
        return status == 403 and await _agents_header(world, admin) == "1"

    assert await unlicensed()
    try:
        mm.set_license("enterprise")
        await poll(licensed, within=15, message="an uploaded Enterprise license never applied")
        # Mattermost unreachable: the last license read stays.
        before = len(mm.requests_to("GET", "/api/v4/license/client"))
        mm.fail_next("/api/v4/license/client", 503, count=1000)
        await poll(
            lambda: len(mm.requests_to("GET", "/api/v4/license/client")) > before + 4,
            within=30,
            message="the license was not read again",
        )
        assert await licensed()
        mm.drop_script()
        mm.set_license("")
        await poll(unlicensed, within=15, message="a removed license stayed")
        # Enterprise Edition without a license: Entry, as the admin guide says.
        mm.set_license("", enterprise_edition=True)
        await poll(licensed, within=15, message="Entry was not applied to Enterprise Edition")
        # Professional unlocks none of the guide's licensed features.
        mm.set_license("professional", enterprise_edition=True)
        await poll(unlicensed, within=15, message="Professional unlocked licensed features")
    finally:
        mm.drop_script()
        mm.set_license("")
        await poll(unlicensed, within=15)
