"""The Mattermost MCP server for external clients, through the gateway, against real processes.

Clients are the official SDK's (legacy sessions and the stateless 2026 era) and raw HTTP where
the test is about the wire: headers, status codes, and a session id carried to another replica.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import jwt
import psutil
import pytest
import pytest_asyncio
from agents.mcp.v1 import embedded_server_pb2, embedded_server_pb2_grpc
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from services.cluster.supervisor import free_port
from tests.fakes.mattermost.state import FakeChannel, FakeUser
from tests.harness import ClusterHarness, SessionPostgres, wait_serving
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENDPOINT = "/plugins/mattermost-ai/mcp-server/mcp"
METADATA = "/plugins/mattermost-ai/mcp-server/.well-known/oauth-protected-resource"
TEN_TOOLS = {
    "read_post",
    "read_channel",
    "search_posts",
    "create_post",
    "create_channel",
    "get_channel_info",
    "get_team_info",
    "search_users",
    "get_channel_members",
    "get_team_members",
}
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


# What every 2026-07-28 request carries in place of a session: the client's era and capabilities.
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


def modern_tools_call(call_id: int, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A raw 2026-07-28 ``tools/call``: no session, the envelope in ``_meta``."""
    return {
        "jsonrpc": "2.0",
        "id": call_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": MODERN_META},
    }


@dataclass
class World:
    h: ClusterHarness
    alice: FakeUser
    bob: FakeUser
    town: FakeChannel
    secret: FakeChannel

    @property
    def url(self) -> str:
        return f"{self.h.gateway_url}{ENDPOINT}"

    def client(self, token: str, mode: str = "legacy", url: str = "") -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})
        return Client(streamable_http_client(url or self.url, http_client=http), mode=mode)  # type: ignore[arg-type]

    async def post(
        self, message: dict[str, Any], *, token: str, base_url: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        hdrs = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": ACCEPT}
        assert self.h.http is not None
        async with self.h.http.post(
            f"{base_url or self.h.gateway_url}{ENDPOINT}", data=json.dumps(message), headers={**hdrs, **(headers or {})}
        ) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            return resp.status, body, dict(resp.headers)

    async def initialize(self, token: str) -> str:
        params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
        status, body, headers = await self.post(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}, token=token
        )
        assert status == 200 and body["result"]["protocolVersion"] == LEGACY, (status, body)
        return headers["mcp-session-id"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    # Every mcp process of a cluster seals with the one key the supervisor hands them all.
    async with ClusterHarness(postgres, env={"AGENTS_INDEX_LICENSE": "entry"}) as h:
        mm = h.mattermost
        await switch_the_server(h, mm.add_user("mcp-root", roles="system_user system_admin"), on=True)
        alice, bob = mm.add_user("mcp-alice"), mm.add_user("mcp-bob")
        team = mm.add_team("mcp-eng", display_name="Engineering")
        for user in (alice, bob):
            mm.add_member(team, user)
        town = mm.add_channel(team.id, "mcp-town", display_name="Town")
        secret = mm.add_channel(team.id, "mcp-secret", type="P", display_name="Secret")
        mm.add_member(town, alice)
        mm.add_member(secret, bob)
        mm.add_post(alice, town, "the release ships on friday")
        mm.add_post(bob, secret, "the release hides a layoff")
        yield World(h, alice, bob, town, secret)


async def switch_the_server(h: ClusterHarness, admin: FakeUser, *, on: bool) -> None:
    """Set mcp.enablePluginServer as an admin does, and wait until the gateway serves accordingly."""
    status, config = await h.get("/admin/config", user=admin)
    assert status == 200, config
    config["mcp"] = {**(config.get("mcp") or {}), "enablePluginServer": on}
    status, body, _ = await h.request("PUT", "/admin/config", user=admin, json_body=config)
    assert status == 200, body

    async def served_accordingly() -> bool:
        status, _, _ = await h.request("GET", "/mcp-server/.well-known/oauth-protected-resource")
        return status == (200 if on else 404)

    await poll(served_accordingly, within=30, interval=0.1, message=f"enablePluginServer={on} never applied")


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content)


async def test_the_sdk_client_lists_the_ten_tools_and_reads_a_channel_with_a_pat(world: World) -> None:
    for mode in ("legacy", "auto"):
        async with world.client(world.alice.token, mode) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == TEN_TOOLS, mode
            result = await client.call_tool("read_channel", {"channel_id": world.town.id})
            assert not result.is_error and "ships on friday" in text_of(result), mode


async def test_a_tool_call_has_the_sdks_server_span_while_tracing_is_on(world: World) -> None:
    async with world.client(world.alice.token) as client:
        assert not (await client.call_tool("get_team_info", {"team_id": world.town.team_id})).is_error

    def found(spans: list[dict[str, Any]]) -> bool:
        return any(s["service"] == "mcp" and s["name"] == "tools/call get_team_info" for s in spans)

    spans = await world.h.wait_for_spans(found)
    span = next(s for s in spans if s["name"] == "tools/call get_team_info")
    assert span["attributes"]["gen_ai.tool.name"] == "get_team_info"


async def test_tools_call_mattermost_with_the_users_own_token_never_the_clusters(world: World) -> None:
    mm = world.h.mattermost
    before = len(mm.requests)
    async with world.client(world.alice.token) as client:
        result = await client.call_tool("create_post", {"channel_id": world.town.id, "message": "from my editor"})
    assert not result.is_error, text_of(result)
    made = mm.requests[before:]
    assert any(r.method == "POST" and r.path == "/api/v4/posts" for r in made)
    assert {r.user_id for r in made} == {world.alice.id}
    post = next(p for p in mm.state.posts.values() if p["message"] == "from my editor")
    assert post["user_id"] == world.alice.id and "from_bot" not in post["props"]


async def test_both_routes_answer_404_while_the_admin_has_the_server_off(world: World) -> None:
    admin = world.h.mattermost.add_user("mcp-root-2", roles="system_user system_admin")
    await switch_the_server(world.h, admin, on=False)
    try:
        status, body, _ = await world.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token=world.alice.token)
        assert status == 404 and "enablePluginServer" in body["error"]
    finally:
        await switch_the_server(world.h, admin, on=True)


async def test_a_post_without_a_session_id_lists_the_tools_as_the_readme_shows(world: World) -> None:
    status, body, headers = await world.post(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, token=world.alice.token
    )
    assert status == 200 and {t["name"] for t in body["result"]["tools"]} == TEN_TOOLS
    assert "mcp-session-id" not in {k.lower() for k in headers}


async def test_a_user_cannot_read_a_channel_they_are_not_in_through_the_tools(world: World) -> None:
    async with world.client(world.alice.token) as client:
        channel = await client.call_tool("read_channel", {"channel_id": world.secret.id})
        members = await client.call_tool("get_channel_members", {"channel_id": world.secret.id})
        search = await client.call_tool("search_posts", {"query": "release"})
    assert channel.is_error and "layoff" not in text_of(channel)
    assert members.is_error and "mcp-bob" not in text_of(members)
    assert "layoff" not in text_of(search)


async def test_a_session_from_one_replica_works_on_another_and_survives_its_replica_being_killed(
    world: World,
) -> None:
    cluster = world.h.cluster
    assert cluster is not None
    port = free_port(cluster.config.host)
    await cluster.start_service("mcp-2", {**cluster.environment(), "AGENTS_MCP_GRPC_PORT": str(port)}, module="mcp")
    await wait_serving(port)
    other_gateway = await world.h.start_gateway("gateway-2", env={"AGENTS_MCP_ADDR": f"{cluster.config.host}:{port}"})

    session = await world.initialize(world.alice.token)  # gateway 1, mcp 1
    await cluster.stop_service("mcp", sig=signal.SIGKILL)
    try:
        await call_on_the_other_replica(world, session, other_gateway)
    finally:
        await cluster.stop_service("gateway-2")
        await cluster.stop_service("mcp-2")
        await cluster.start_service("mcp")
        await cluster.wait_healthy(names=("mcp",))

        async def first_gateway_reaches_mcp_again() -> bool:
            status, _, _ = await world.h.request("GET", "/mcp-server/.well-known/oauth-protected-resource")
            return status == 200

        # The first gateway's channel reconnects after its backoff; the other tests use it.
        await poll(first_gateway_reaches_mcp_again, within=30, interval=0.2, message="gateway never reached mcp")


async def call_on_the_other_replica(world: World, session: str, other_gateway: str) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "read_channel", "arguments": {"channel_id": world.town.id}},
    }
    headers = {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    status, body, answer = await world.post(call, token=world.alice.token, base_url=other_gateway, headers=headers)
    assert status == 200, body
    assert not body["result"]["isError"] and "ships on friday" in body["result"]["content"][0]["text"]
    assert answer["mcp-session-id"] == session


async def test_a_session_id_that_is_tampered_or_anothers_is_not_found(world: World) -> None:
    session = await world.initialize(world.alice.token)
    listing = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    forged = session[:-4] + ("AAAA" if not session.endswith("AAAA") else "BBBB")
    for token, session_id in ((world.alice.token, forged), (world.bob.token, session)):
        status, body, _ = await world.post(listing, token=token, headers={"Mcp-Session-Id": session_id})
        assert status == 404 and body["error"]["message"] == "Session not found"


async def test_get_and_delete_answer_405_for_the_server_offers_no_stream_and_holds_no_session(world: World) -> None:
    session = await world.initialize(world.alice.token)
    headers = {"Authorization": f"Bearer {world.alice.token}", "Accept": ACCEPT, "Mcp-Session-Id": session}
    assert world.h.http is not None
    for method in ("GET", "DELETE"):
        async with world.h.http.request(method, world.url, headers=headers) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST", method


async def test_a_missing_or_bad_token_is_401_naming_the_resource_metadata(world: World) -> None:
    listing = {"jsonrpc": "2.0", "id": 4, "method": "tools/list"}
    expected = f'resource_metadata="{world.h.mattermost.url}{METADATA}"'
    for token in ("", "not-a-mattermost-token"):
        status, body, headers = await world.post(listing, token=token)
        assert status == 401, body
        assert headers["WWW-Authenticate"].startswith("Bearer ") and expected in headers["WWW-Authenticate"]

    status, document, _ = await world.h.request("GET", "/mcp-server/.well-known/oauth-protected-resource")
    assert status == 200
    assert document["resource"] == f"{world.h.mattermost.url}/plugins/mattermost-ai/mcp-server"
    assert document["authorization_servers"] == [f"{world.h.mattermost.url}/"]


async def test_mattermost_unavailable_while_checking_the_token_is_503_with_retry_after(world: World) -> None:
    mm = world.h.mattermost
    carol = mm.add_user("mcp-carol")  # a token not checked yet, so Mattermost is asked
    mm.fail_next("/api/v4/users/me", 503, count=4, retry_after=0)  # every attempt the client makes
    try:
        status, body, headers = await world.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, token=carol.token)
    finally:
        mm.drop_script()
    assert status == 503 and "Retry-After" in headers, (status, body)
    assert "127.0.0.1" not in json.dumps(body)


async def test_a_token_is_checked_at_mattermost_once_then_reused(world: World) -> None:
    mm = world.h.mattermost
    dave = mm.add_user("mcp-dave")
    before = len(mm.requests_to("GET", "/api/v4/users/me"))
    for n in range(3):
        status, _, _ = await world.post({"jsonrpc": "2.0", "id": n, "method": "tools/list"}, token=dave.token)
        assert status == 200
    assert len(mm.requests_to("GET", "/api/v4/users/me")) == before + 1


async def test_a_token_for_another_audience_is_refused_without_reaching_mattermost(world: World) -> None:
    foreign = jwt.encode({"sub": world.alice.id, "aud": "https://other.example/mcp"}, "k" * 32, algorithm="HS256")
    mm = world.h.mattermost
    before = len(mm.requests)
    status, _, headers = await world.post({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}, token=foreign)
    assert status == 401 and "resource_metadata=" in headers["WWW-Authenticate"]
    assert mm.requests[before:] == []


async def test_a_foreign_origin_or_host_is_refused(world: World) -> None:
    mm = world.h.mattermost
    call = {
        "jsonrpc": "2.0",
        "id": 6,
        "method": "tools/call",
        "params": {"name": "create_post", "arguments": {"channel_id": world.town.id, "message": "rebound"}},
    }
    status, _, _ = await world.post(call, token=world.alice.token, headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _, _ = await world.post(call, token=world.alice.token, headers={"Host": "evil.example"})
    assert status == 421
    assert not any(p["message"] == "rebound" for p in mm.state.posts.values())


async def raw_listing(world: World, header: str, value: bytes) -> tuple[bytes, bytes]:
    """A tools/list whose ``header`` is sent as the bytes ``value`` over a raw socket: the status
    line and the rest of the answer."""
    listing = json.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).encode()
    values = {"Authorization": f"Bearer {world.alice.token}".encode(), header: value}
    host, port = world.h.gateway_url.removeprefix("http://").rsplit(":", 1)
    head = f"POST {ENDPOINT} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n".encode()
    head += f"Accept: {ACCEPT}\r\nContent-Length: {len(listing)}\r\nConnection: close\r\n".encode()
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in values.items())
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + b"\r\n" + listing)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return status_line, rest


def error_of(rest: bytes) -> str:
    """The ``error`` of the JSON body after the answer's headers."""
    return str(json.loads(rest.partition(b"\r\n\r\n")[2])["error"])


@pytest.mark.parametrize("header", ["Authorization", "Mcp-Session-Id"])
async def test_a_header_that_is_not_utf8_is_400_naming_it(world: World, header: str) -> None:
    # aiohttp hands such bytes on as lone surrogates, which the forwarded protobuf string refuses.
    status_line, rest = await raw_listing(world, header, b"\xff\xfe")
    assert status_line.endswith(b" 400 Bad Request"), (status_line, rest[:300])
    assert header in error_of(rest)


@pytest.mark.parametrize("header", ["Mcp-Name", "Mcp-Param-Region"])
async def test_a_routing_header_that_is_not_ascii_is_400_naming_it_and_the_encoding_to_use(
    world: World, header: str
) -> None:
    # The protocol base64-wraps such values (=?base64?...?=); sent raw, they broke the forwarding.
    status_line, rest = await raw_listing(world, header, "Zürich 東京".encode())
    assert status_line.endswith(b" 400 Bad Request"), (status_line, rest[:300])
    assert header in error_of(rest) and "=?base64?" in error_of(rest)


async def test_too_many_or_too_long_param_headers_are_400_naming_the_limit(world: World) -> None:
    listing = {"jsonrpc": "2.0", "id": 9, "method": "tools/list"}
    many = {f"Mcp-Param-P{i}": "x" for i in range(33)}
    status, body, _ = await world.post(listing, token=world.alice.token, headers=many)
    assert status == 400 and "more than 32 Mcp-Param-* headers" in body["error"], (status, body)
    long = {"Mcp-Param-Region": "x" * 4097}
    status, body, _ = await world.post(listing, token=world.alice.token, headers=long)
    assert status == 400 and "Mcp-Param-Region is longer than 4096 characters" in body["error"], (status, body)


def forwarded(
    world: World, message: dict[str, Any], headers: dict[str, str], *, head_with_body: bool = True
) -> embedded_server_pb2.ServeHttpRequest:
    """``message`` from Alice as the gateway forwards it to the mcp service, with ``headers`` added."""
    sent = {
        "Host": world.h.mattermost.url.split("//", 1)[1],
        "Authorization": f"Bearer {world.alice.token}",
        "Content-Type": "application/json",
        "Accept": ACCEPT,
        **headers,
    }
    return embedded_server_pb2.ServeHttpRequest(
        method="POST",
        path="/mcp",
        headers=[embedded_server_pb2.HttpHeader(name=n, value=v) for n, v in sent.items()],
        body=json.dumps(message).encode(),
        head_with_body=head_with_body,
    )


async def test_a_json_answer_comes_from_the_mcp_service_whole_in_one_grpc_message(world: World) -> None:
    # The gateway's own call: one message for head and body halves grpc's per-answer work; a
    # caller that does not ask (an older gateway) still gets the head, then the body.
    call = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "tools/call",
        "params": {"name": "read_channel", "arguments": {"channel_id": world.town.id}},
    }
    headers, metadata = {"MCP-Protocol-Version": LEGACY}, world.h.metadata()
    async with world.h.channel("mcp") as channel:
        stub = embedded_server_pb2_grpc.EmbeddedServerStub(channel)
        whole = [part async for part in stub.ServeHttp(forwarded(world, call, headers), metadata=metadata, timeout=30)]
        split_request = forwarded(world, call, headers, head_with_body=False)
        split = [part async for part in stub.ServeHttp(split_request, metadata=metadata, timeout=30)]
    assert len(whole) == 1 and whole[0].head.status == 200, whole
    answer = json.loads(whole[0].head.body)
    assert answer["id"] == 9 and "the release ships on friday" in answer["result"]["content"][0]["text"], answer
    assert [part.WhichOneof("part") for part in split] == ["head", "body_chunk"], split
    assert not split[0].head.body and json.loads(split[1].body_chunk) == answer


async def test_a_handshake_era_request_costs_the_mcp_process_no_more_cpu_than_a_stateless_era_one(
    world: World,
) -> None:
    # Stateless, the SDK served each handshake-era request through a transport, a dispatcher and a
    # server task built for it and torn down after the answer; a 2026-07-28 request is answered
    # in one exchange. The mcp process's CPU seconds (not wall-clock), the two eras interleaved:
    # 1.41 times the 2026-07-28 era's then, 1.01 now.
    assert world.h.cluster is not None
    process = psutil.Process(world.h.cluster.processes["mcp"].proc.pid)
    session = await world.initialize(world.alice.token)
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    legacy = forwarded(world, listing, {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY})
    modern_listing = {**listing, "params": {"_meta": MODERN_META}}
    modern = forwarded(world, modern_listing, {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"})
    cpu = {"handshake era": 0.0, "2026-07-28": 0.0}
    async with world.h.channel("mcp") as channel:
        stub = embedded_server_pb2_grpc.EmbeddedServerStub(channel)

        async def serve(request: embedded_server_pb2.ServeHttpRequest, n: int) -> None:
            for _ in range(n):
                [part] = [p async for p in stub.ServeHttp(request, metadata=world.h.metadata(), timeout=30)]
                assert part.head.status == 200 and len(json.loads(part.head.body)["result"]["tools"]) == 10

        await serve(legacy, 20)
        await serve(modern, 20)
        for _ in range(8):
            for era, request in (("handshake era", legacy), ("2026-07-28", modern)):
                start = sum(process.cpu_times()[:2])
                await asyncio.gather(*(serve(request, 10) for _ in range(4)))
                cpu[era] += sum(process.cpu_times()[:2]) - start
    assert cpu["handshake era"] <= 1.2 * cpu["2026-07-28"], cpu


async def test_a_stateless_era_call_through_the_gateway_is_served_in_one_exchange(world: World) -> None:
    # The 2026-07-28 era routes on Mcp-Method and Mcp-Name as well: a gateway that dropped them
    # got a header mismatch, and the SDK's clients fell back to the costlier handshake era.
    call = modern_tools_call(10, "read_channel", {"channel_id": world.town.id})
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "read_channel"}
    status, body, _ = await world.post(call, token=world.alice.token, headers=headers)
    assert status == 200 and "the release ships on friday" in body["result"]["content"][0]["text"], (status, body)
