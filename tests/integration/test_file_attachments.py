"""Files attached to posts, through the gateway: read into an agent's prompt (what the fake
provider receives), served by POST /files/content, and named by bridge completions' file_ids.
Whoever cannot read a file's channel gets neither its text nor a completion made from it."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from services.tools.catalog import BUILTIN_TOOLS
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeChannel, FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLUGIN_ID = "com.example.files"
PLUGIN_SECRET = secrets.token_hex(32)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    env = {
        **FAST,
        "AGENTS_INDEX_LICENSE": "enterprise",
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={PLUGIN_SECRET}",
    }
    async with FakeOpenAI() as openai, ClusterHarness(postgres, env=env) as harness:
        w = World(harness, openai)
        await w.setup()
        yield w


def prompt_sent_with(world: World, marker: str) -> dict[str, Any]:
    """The body of the provider request whose messages contain ``marker``."""
    return next(r.body for r in world.openai.requests if marker in json.dumps(r.body.get("messages")))


def shared_file(
    world: World, name: str, content: bytes, mime_type: str = "text/plain"
) -> tuple[FakeUser, FakeChannel, str]:
    """A private channel whose only member (its owner) attached ``name`` to a post there."""
    stem = name.replace(".", "-")
    owner = world.mm.add_user(f"{stem}-owner")
    team = world.mm.add_team(f"{stem}-team")
    channel = world.mm.add_channel(team.id, f"{stem}-room", type="P")
    world.mm.add_member(team, owner)
    world.mm.add_member(channel, owner)
    info = world.mm.add_file(owner, name, content, mime_type)
    world.mm.add_post(owner, channel, "see attached", file_ids=[info["id"]])
    return owner, channel, info["id"]


def outsider(world: World, channel: FakeChannel, username: str) -> FakeUser:
    """A member of the channel's team who is not in the (private) channel."""
    user = world.mm.add_user(username)
    world.mm.state.add_team_member(channel.team_id, user.id)
    return user


async def test_a_text_file_in_a_dm_is_read_into_the_prompt_which_names_only_offered_tools(world: World) -> None:
    bot = await world.agent("reader")
    ada = world.mm.add_user("ada")
    dm = world.mm.add_direct_channel(ada, bot)
    notes = world.mm.add_file(ada, "notes.txt", b"The launch word is PAPAYA.\n")
    report = world.mm.add_file(ada, "report.pdf", b"%PDF-1.7 binary", "application/pdf")
    world.openai.enqueue(FakeResponse.text("PAPAYA."), FakeResponse.text("Title"))
    post = await world.mm.user_posts(ada, dm, "what is the launch word?", file_ids=[notes["id"], report["id"]])
    assert (await world.answer_to(post))["message"] == "PAPAYA."
    body = prompt_sent_with(world, "what is the launch word?")
    prompt = json.dumps(body["messages"])
    assert "File Name: notes.txt\\nContent: The launch word is PAPAYA." in prompt
    # A file whose text Mattermost does not serve is named, not read.
    assert "report.pdf (application/pdf, 15 bytes): content not available" in prompt
    offered = {t["function"]["name"] for t in body.get("tools", [])}
    named = {name for name in {t.name for t in BUILTIN_TOOLS} | {"read_file"} if name in prompt}
    assert named <= offered, f"the prompt names tools the model was not offered: {named - offered}"


async def test_a_text_file_over_the_agents_max_file_size_is_cut_there_with_a_note(world: World) -> None:
    bot = await world.agent("skimmer", max_file_size=100)
    bea = world.mm.add_user("bea")
    dm = world.mm.add_direct_channel(bea, bot)
    log = world.mm.add_file(bea, "big.log", b"0123456789" * 10 + b"TAIL-NEVER-READ" * 20)
    world.openai.enqueue(FakeResponse.text("Long."), FakeResponse.text("Title"))
    post = await world.mm.user_posts(bea, dm, "summarize the log", file_ids=[log["id"]])
    await world.answer_to(post)
    prompt = json.dumps(prompt_sent_with(world, "summarize the log")["messages"])
    assert "0123456789" * 10 + "\\n... (content truncated due to size limit)" in prompt
    assert "TAIL-NEVER-READ" not in prompt


async def test_file_content_serves_a_window_of_the_text_counted_in_runes(world: World) -> None:
    reader, _, file_id = shared_file(world, "poem.txt", "héllo wörld, ünïcode".encode())
    status, body, _ = await world.h.request(
        "POST", "/files/content", user=reader, json_body={"file_id": file_id, "offset": 6, "limit": 5}
    )
    assert status == 200, body
    assert_matches_openapi("POST", "/files/content", 200, body)
    assert body == {
        "name": "poem.txt",
        "mime_type": "text/plain",
        "total_runes": 20,
        "offset": 6,
        "returned": 5,
        "has_more": True,
        "has_text": True,
        "text": "wörld",
    }


async def test_file_content_is_refused_to_a_user_who_cannot_read_the_channel(world: World) -> None:
    _, channel, file_id = shared_file(world, "secret.txt", b"classified")
    eve = outsider(world, channel, "eve")
    status, body, _ = await world.h.request("POST", "/files/content", user=eve, json_body={"file_id": file_id})
    assert status == 403 and "classified" not in json.dumps(body)
    assert_matches_openapi("POST", "/files/content", 403, body)
    status, body, _ = await world.h.request("POST", "/files/content", user=eve, json_body={"file_id": "n" * 26})
    assert status == 404
    assert_matches_openapi("POST", "/files/content", 404, body)


async def test_file_content_refuses_a_window_over_the_limit_with_400_naming_it(world: World) -> None:
    _, _, file_id = shared_file(world, "wide.txt", b"wide")
    eve = world.mm.add_user("eve-wide")
    status, body, _ = await world.h.request(
        "POST", "/files/content", user=eve, json_body={"file_id": file_id, "limit": 20001}
    )
    assert status == 400 and "limit" in body["error"] and "20000" in body["error"]
    assert_matches_openapi("POST", "/files/content", 400, body)


@pytest.mark.parametrize("file_id", [".", "..", "a" * 10_000, "A" * 26, "", 42])
async def test_a_file_id_that_is_no_mattermost_id_is_400_naming_it_and_mattermost_is_not_asked(
    world: World, file_id: object
) -> None:
    # Mattermost's ids are 26 of [a-z0-9]: anything else names no file. Quoting leaves "." and
    # "..", which a URL resolves (/files/../info would be /api/v4/info, asked with the cluster
    # account's token), and sending on 10,000 characters would only cost Mattermost a lookup.
    eve = world.mm.add_user(f"eve-ids-{secrets.token_hex(4)}")
    asked = len(world.mm.requests)
    status, body, _ = await world.h.request("POST", "/files/content", user=eve, json_body={"file_id": file_id})
    assert status == 400 and "file_id" in body["error"], body
    assert_matches_openapi("POST", "/files/content", 400, body)
    paths = [r.path for r in world.mm.requests[asked:]]
    assert not [p for p in paths if p.startswith("/api/v4/files") or p == "/api/v4/info"], paths


def bridge_headers() -> dict[str, str]:
    return {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": PLUGIN_SECRET}


async def test_bridge_file_ids_are_read_into_the_completion_for_a_user_who_can_read_them(world: World) -> None:
    await world.agent("bridged")
    owner, _, file_id = shared_file(world, "brief.txt", b"The budget is 42 kiwis.")
    world.openai.enqueue(FakeResponse.text("42 kiwis."))
    request = {
        "posts": [{"role": "user", "message": "what is the budget?", "file_ids": [file_id]}],
        "user_id": owner.id,
    }
    status, body, _ = await world.h.request(
        "POST", "/bridge/v1/completion/agent/bridged/nostream", json_body=request, headers=bridge_headers()
    )
    assert status == 200 and body == {"completion": "42 kiwis."}
    prompt = json.dumps(prompt_sent_with(world, "what is the budget?")["messages"])
    assert "File Name: brief.txt\\nContent: The budget is 42 kiwis." in prompt


async def test_bridge_file_ids_from_a_channel_the_user_cannot_read_are_refused(world: World) -> None:
    await world.agent("guarded")
    _, channel, file_id = shared_file(world, "payroll.txt", b"salaries")
    mallory = outsider(world, channel, "mallory")
    asked = len(world.openai.requests)
    request = {"posts": [{"role": "user", "message": "read it", "file_ids": [file_id]}], "user_id": mallory.id}
    status, body, _ = await world.h.request(
        "POST", "/bridge/v1/completion/agent/guarded/nostream", json_body=request, headers=bridge_headers()
    )
    assert status == 403 and "salaries" not in json.dumps(body)
    # The same user with their own session token is refused too.
    status, _, _ = await world.h.request(
        "POST",
        "/bridge/v1/completion/agent/guarded/nostream",
        user=mallory,
        json_body={"posts": request["posts"]},
        headers={"Mattermost-Plugin-ID": PLUGIN_ID},
    )
    assert status == 403
    assert len(world.openai.requests) == asked


async def test_bridge_images_reach_a_vision_agent_as_images(world: World) -> None:
    await world.agent("viewer", enable_vision=True)
    owner, _, file_id = shared_file(world, "chart.png", PNG, "image/png")
    world.openai.enqueue(FakeResponse.text("A chart."))
    request = {
        "posts": [{"role": "user", "message": "describe the picture", "file_ids": [file_id]}],
        "user_id": owner.id,
    }
    status, _, _ = await world.h.request(
        "POST", "/bridge/v1/completion/agent/viewer/nostream", json_body=request, headers=bridge_headers()
    )
    assert status == 200
    messages = prompt_sent_with(world, "describe the picture")["messages"]
    parts = [p for m in messages if isinstance(m["content"], list) for p in m["content"]]
    assert any(p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/png") for p in parts)


async def test_bad_bridge_file_ids_are_refused_with_400_naming_them(world: World) -> None:
    # The body is refused before any agent is looked up: the name need not exist.
    path = "/bridge/v1/completion/agent/anyone/nostream"
    cases = (
        ("f1", "posts[0].file_ids"),
        (["f" * 26, "a" * 10_000], "posts[0].file_ids[1]"),
        ([f"f{i}".ljust(26, "0") for i in range(9)], "at most 8 file_ids"),
    )
    for file_ids, expected in cases:
        request = {"posts": [{"role": "user", "message": "hi", "file_ids": file_ids}]}
        status, body, _ = await world.h.request("POST", path, json_body=request, headers=bridge_headers())
        assert status == 400 and expected in body["error"], body
