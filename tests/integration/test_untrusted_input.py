"""Untrusted input at the cluster's edges: HTTP bodies as they arrive on the socket (split,
chunked, oversized, nested, with text PostgreSQL cannot hold), multipart avatars, raw gRPC bytes,
and what a caller learns when a service is down. Bad input is a 4xx naming the problem, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc

from services.common.identity import Identity
from services.gateway.settings import GatewaySettings
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

MAX_BODY = GatewaySettings.model_fields["max_body_bytes"].default
# How long a split body's sender waits between its writes: long enough for a gateway that answers
# before the whole body arrived to do so (the failure being tested), never needed by a correct one.
GAP_SECONDS = 0.5
PLUGIN_HEADERS = {"Mattermost-Plugin-ID": "com.example.caller"}
BRIDGE_BODY = {"posts": [{"role": "user", "message": "Say hello"}]}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        async with ClusterHarness(postgres, env={**FAST, "AGENTS_INDEX_LICENSE": "enterprise"}) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plugin(world: World) -> dict[str, str]:
    """Headers of another Mattermost plugin calling the bridge (with its bot's token)."""
    account = world.mm.add_user("calling-plugin-bot", is_bot=True)
    await new_agent(world, "bridged")
    return {**PLUGIN_HEADERS, "Authorization": f"Bearer {account.token}"}


async def new_agent(world: World, username: str) -> dict[str, Any]:
    body = {"username": username, "displayName": username.title(), "serviceID": world.service_id}
    status, agent, _ = await world.h.request("POST", "/agents", user=world.admin, json_body=body)
    assert status == 201, agent
    return agent


# ---- raw HTTP --------------------------------------------------------------------------------


async def _answer_before_the_rest(reader: asyncio.StreamReader) -> bytes:
    """What the gateway sends while the body is incomplete: nothing, when it waits for the rest."""
    try:
        return await asyncio.wait_for(reader.read(1), GAP_SECONDS)
    except TimeoutError:
        return b""


async def raw_post(
    h: ClusterHarness, path: str, user: FakeUser, head: dict[str, str], *parts: bytes
) -> tuple[int, Any]:
    """POST over a plain socket, each part a separate write after a pause; the status and JSON body."""
    host, port = h.gateway_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    headers = {"Host": f"{host}:{port}", "Authorization": f"Bearer {user.token}", **head}
    lines = [f"POST {PLUGIN}{path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + parts[0])
        await writer.drain()
        for part in parts[1:]:
            assert await _answer_before_the_rest(reader) == b"", "the gateway answered before the body was complete"
            writer.write(part)
            await writer.drain()
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().strip().split("\r\n")
        length = next(
            int(v) for k, v in (line.split(": ", 1) for line in header_lines) if k.lower() == "content-length"
        )
        body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(status_line.split(" ", 2)[1]), json.loads(body) if body else None


def _chunked(payload: bytes, size: int) -> bytes:
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def _prompt(padding: int = 0) -> bytes:
    return json.dumps({"name": "Split", "template": "Hello {{.Username}}", "pad": "x" * padding}).encode()


@pytest.mark.parametrize("size", [60, MAX_BODY - 64], ids=["small", "near-limit"])
async def test_a_json_body_split_across_tcp_writes_is_read_whole(world: World, size: int) -> None:
    user = world.mm.add_user(f"splitter{size}")
    body = _prompt()
    body = _prompt(size - len(body)) if size > len(body) else body
    head = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    status, created = await raw_post(world.h, "/custom-prompts", user, head, body[:20], body[20:])
    assert status == 201, created
    assert created["name"] == "Split"


async def test_a_chunked_json_body_split_across_writes_is_read_whole(world: World) -> None:
    user = world.mm.add_user("chunky")
    encoded = _chunked(_prompt(), 16)
    head = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    status, created = await raw_post(world.h, "/custom-prompts", user, head, encoded[:30], encoded[30:])
    assert status == 201, created


async def test_a_chunked_body_over_the_limit_is_refused_with_413(world: World) -> None:
    user = world.mm.add_user("oversized-chunks")
    wire = _chunked(_prompt(MAX_BODY), 64 * 1024)
    head = {"Transfer-Encoding": "chunked"}
    status, answer = await raw_post(world.h, "/custom-prompts", user, head, wire[:1000], wire[1000:])
    assert status == 413 and str(MAX_BODY) in answer["error"], answer


async def test_a_content_length_over_the_limit_is_refused_with_413_before_the_body_arrives(world: World) -> None:
    user = world.mm.add_user("oversized-length")
    body = _prompt(MAX_BODY)
    status, answer = await raw_post(world.h, "/custom-prompts", user, {"Content-Length": str(len(body))}, body[:1000])
    assert status == 413 and str(MAX_BODY) in answer["error"], answer


# ---- nesting, text and numbers in JSON bodies --------------------------------------------------


async def test_deeply_nested_json_is_refused_with_400_naming_the_depth_limit(world: World) -> None:
    admin = world.admin
    for body in ("[" * 100_000, json.dumps(_nested(40))):
        status, answer, _ = await world.h.request("POST", "/agents", user=admin, data=body)
        assert status == 400, answer
        assert "32 levels" in answer["error"]


async def test_a_bridge_json_output_format_too_deep_for_protobuf_is_refused_with_400(
    world: World, plugin: dict[str, str]
) -> None:
    path = "/bridge/v1/completion/agent/bridged/nostream"
    body = {**BRIDGE_BODY, "json_output_format": _nested(34)}
    status, answer, _ = await world.h.request("POST", path, json_body=body, headers=plugin)
    assert status == 400, answer
    assert "32 levels" in answer["error"]
    # The deepest schema the limit lets through (the body is one level more) reaches the model.
    world.openai.enqueue(FakeResponse.text("{}"))
    body = {**BRIDGE_BODY, "json_output_format": _nested(31)}
    status, answer, _ = await world.h.request("POST", path, json_body=body, headers=plugin)
    assert (status, answer) == (200, {"completion": "{}"})


def _nested(levels: int) -> dict[str, Any]:
    """A JSON object ``levels`` objects deep."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def test_text_with_nul_or_a_lone_surrogate_is_refused_with_400_naming_its_json_path(
    world: World, plugin: dict[str, str]
) -> None:
    user = world.mm.add_user("texter")
    status, answer, _ = await world.h.request(
        "POST", "/custom-prompts", user=user, json_body={"name": "N", "template": "a\x00b"}
    )
    assert status == 400 and "template" in answer["error"] and "NUL" in answer["error"]
    status, answer, _ = await world.h.request(
        "POST", "/custom-prompts", user=user, json_body={"name": "\ud800", "template": "t"}
    )
    assert status == 400 and "name" in answer["error"] and "surrogate" in answer["error"]

    body = {"posts": [{"role": "user", "message": "hi \ud800"}]}
    status, answer, _ = await world.h.request(
        "POST", "/bridge/v1/completion/agent/bridged/nostream", json_body=body, headers=plugin
    )
    assert status == 400 and "posts[0].message" in answer["error"]


async def test_a_path_or_query_parameter_with_nul_is_refused_with_400_naming_it(
    world: World, plugin: dict[str, str]
) -> None:
    status, answer, _ = await world.h.request("GET", "/agents/a%00b", user=world.admin)
    assert status == 400 and "agentid" in answer["error"]
    status, answer, _ = await world.h.request("GET", "/bridge/v1/agents?user_id=%00", headers=plugin)
    assert status == 400 and "user_id" in answer["error"]


async def test_a_body_id_that_is_no_mattermost_id_is_400_naming_it_and_mattermost_is_not_asked(
    world: World, plugin: dict[str, str]
) -> None:
    # Mattermost's ids are 26 of [a-z0-9]: an over-long one names nothing and is not sent on.
    long_id = "a" * 10_000
    user = world.mm.add_user("id-sender")
    status, prompt, _ = await world.h.request(
        "POST", "/custom-prompts", user=user, json_body={"name": "Ids", "template": "In {{.ChannelName}}"}
    )
    assert status == 201, prompt
    bridge = "/bridge/v1/completion/agent/{agent}/nostream"
    cases = [
        (bridge, {**BRIDGE_BODY, "user_id": long_id}, "user_id"),
        (bridge, {**BRIDGE_BODY, "channel_id": long_id}, "channel_id"),
        ("/search/raw", {"query": "q", "team_id": long_id}, "team_id"),
        ("/search/raw", {"query": "q", "channel_id": "A" * 26}, "channel_id"),
        ("/search", {"query": "q", "teamId": long_id}, "teamId"),
        ("/custom-prompts/{id}/render", {"channel_id": long_id}, "channel_id"),
    ]
    asked = len(world.mm.requests)
    for template, body, field in cases:
        path = template.format(agent="bridged", id=prompt["id"])
        bridged = template == bridge
        status, answer, _ = await world.h.request(
            "POST", path, json_body=body, user=None if bridged else user, headers=plugin if bridged else None
        )
        assert status == 400 and field in answer["error"], (path, field, answer)
        assert_matches_openapi("POST", template, 400, answer)
    assert not [r.path for r in world.mm.requests[asked:] if long_id in r.path or long_id in json.dumps(r.json)]


async def test_an_agent_update_with_nul_is_refused_and_the_agent_is_unchanged(world: World) -> None:
    agent = await new_agent(world, "nulled")
    edit = {**agent, "customInstructions": "be \x00 brief"}
    status, answer, _ = await world.h.request("PUT", f"/agents/{agent['id']}", user=world.admin, json_body=edit)
    assert status == 400 and "customInstructions" in answer["error"]
    status, stored, _ = await world.h.request("GET", f"/agents/{agent['id']}", user=world.admin)
    assert status == 200 and stored["customInstructions"] == agent["customInstructions"]


async def test_a_config_service_name_with_nul_is_refused_and_not_stored(world: World) -> None:
    status, config, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert status == 200
    service = {"id": "nul-svc", "name": "bad\x00name", "type": "openai", "apiKey": "k"}
    edited = {**config, "services": [*config["services"], service]}
    status, answer, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=edited)
    assert status == 400 and "services[1].name" in answer["error"]
    status, after, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert "nul-svc" not in {s["id"] for s in after["services"]}


async def test_integers_out_of_range_of_their_proto_field_are_refused_naming_the_field(
    world: World, plugin: dict[str, str]
) -> None:
    body = {**BRIDGE_BODY, "max_generated_tokens": 2**31}
    status, answer, _ = await world.h.request(
        "POST", "/bridge/v1/completion/agent/bridged/nostream", json_body=body, headers=plugin
    )
    assert status == 400 and "max_generated_tokens" in answer["error"]
    agent = await new_agent(world, "ranged")
    edit = {**agent, "updateAt": 2**63}
    status, answer, _ = await world.h.request("PUT", f"/agents/{agent['id']}", user=world.admin, json_body=edit)
    assert status == 400 and "updateAt" in answer["error"]


async def test_a_dm_with_nul_is_answered(world: World) -> None:
    bot = await world.agent("nulreader")
    alice = world.mm.add_user("nulsender")
    dm = world.mm.add_direct_channel(alice, bot)
    world.openai.enqueue(FakeResponse.text("Got it"), FakeResponse.text("Title"))
    post = await world.mm.user_posts(alice, dm, "read this: a\x00b")
    reply = await world.answer_to(post)
    assert reply["message"] == "Got it" and reply["props"]["agents_stream_status"] == "done"
    await poll(lambda: world.openai.queued == 0)  # the title too: no later test gets its answer


# ---- avatars -----------------------------------------------------------------------------------


async def _avatar(world: World, agent_id: str, content_type: str, body: bytes) -> tuple[int, Any]:
    status, answer, _ = await world.h.request(
        "POST", f"/agents/{agent_id}/avatar", user=world.admin, data=body, headers={"Content-Type": content_type}
    )
    return status, answer


BAD_PARTS = b'--b\r\nContent-Disposition form-data; name="image"\r\n\r\nPNG\r\n--b--\r\n'


async def test_a_malformed_multipart_avatar_is_refused_with_400(world: World) -> None:
    agent = await new_agent(world, "framed")
    status, answer = await _avatar(world, agent["id"], "multipart/form-data", b"--b\r\n\r\nPNG\r\n--b--\r\n")
    assert status == 400 and "boundary" in answer["error"]
    status, answer = await _avatar(world, agent["id"], "multipart/form-data; boundary=b", BAD_PARTS)
    assert status == 400, answer


async def test_an_avatar_for_an_unknown_agent_is_404_whatever_its_body(world: World) -> None:
    status, _ = await _avatar(world, "no-such-agent", "multipart/form-data", b"garbage")
    assert status == 404


# ---- gRPC --------------------------------------------------------------------------------------

# A unary method of each service, and a server-streaming one.
RAW_METHODS = [
    ("index", "/agents.registry.v1.Registry/GetAgent", False),
    ("llm", "/agents.llm.v1.LLM/CountTokens", False),
    ("llm", "/agents.llm.v1.Conversations/Respond", True),
    ("tools", "/agents.tools.v1.Tools/ExecuteTool", False),
    ("mcp", "/agents.mcp.v1.MCP/GetServer", False),
]


@pytest.mark.parametrize(("service", "method", "streaming"), RAW_METHODS)
async def test_garbage_request_bytes_are_invalid_argument(
    world: World, service: str, method: str, streaming: bool
) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, with a length past the end
    async with world.h.channel(service) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            if streaming:
                async for _ in channel.unary_stream(method)(garbage, metadata=world.h.metadata(), timeout=10):
                    pass
            else:
                await channel.unary_unary(method)(garbage, metadata=world.h.metadata(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


async def test_get_agent_with_an_empty_id_is_invalid_argument(world: World) -> None:
    async with world.h.channel("index") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await registry_pb2_grpc.RegistryStub(channel).GetAgent(
                registry_pb2.GetAgentRequest(id=""), metadata=world.md(), timeout=10
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_execute_tool_without_an_agent_id_is_invalid_argument(world: World) -> None:
    user = world.mm.add_user("toolless")
    request = tools_pb2.ExecuteToolRequest(
        context=tools_pb2.ToolContext(user_id=user.id), tool_name="read_channel", tool_call_id="c1"
    )
    async with world.h.channel("tools") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tools_pb2_grpc.ToolsStub(channel).ExecuteTool(
                request, metadata=world.h.metadata(Identity(user_id=user.id)), timeout=10
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_id" in (err.value.details() or "")


# ---- a service that is down --------------------------------------------------------------------


async def test_a_bridge_call_while_the_llm_service_is_down_is_503_without_internal_addresses(
    postgres: SessionPostgres,
) -> None:
    async with FakeOpenAI() as openai, ClusterHarness(postgres) as h:
        world = World(h, openai)
        await world.setup()
        await new_agent(world, "lonely")
        account = h.mattermost.add_user("plugin-bot", is_bot=True)
        headers = {**PLUGIN_HEADERS, "Authorization": f"Bearer {account.token}"}
        assert h.cluster is not None
        llm_port = str(h.cluster.config.port("llm"))
        await h.cluster.stop_service("llm")
        for path in ("/bridge/v1/completion/agent/lonely", "/bridge/v1/completion/agent/lonely/nostream"):
            status, body, response_headers = await h.request("POST", path, json_body=BRIDGE_BODY, headers=headers)
            assert status == 503 and "Retry-After" in response_headers
            assert "unavailable" in body["error"] and "retry" in body["error"]
            for leak in ("127.0.0.1", "ipv4", llm_port, "Connection refused", "failed to connect"):
                assert leak not in body["error"], body
        assert any("UNAVAILABLE" in line for line in h.logs["gateway"])
