"""Remote MCP servers, client side: the admin's server configuration, per-user sessions over
streamable HTTP with real SDK servers (one initialize per idle window, a deadline that cuts a hung
server without holding up anyone else, idle close), the plugin's MCP routes, the outbound guard and
the tool-call span. Everything goes through the gateway's routes or the mcp service's gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.cluster.supervisor import free_port
from services.common.identity import Identity
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.mcp_remote import FakeMcpServer, HangingServer
from tests.harness import ClusterHarness, SessionPostgres, insert_agent, wait_serving
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET_HEADER = "Bearer jira-static-s3cret"
# The service the seeded agents name (insert_agent's serviceid): saving an agent checks it exists.
SERVICE = {"id": "svc", "name": "svc", "type": "openai", "apiKey": "sk-test"}
ENV = {
    "AGENTS_INDEX_LICENSE": "enterprise",
    # The fakes listen on the loopback address; an operator opens exactly that host to MCP servers.
    "AGENTS_MCP_PRIVATE_ALLOWED_HOSTNAMES": "127.0.0.1",
    "AGENTS_MCP_CALL_TIMEOUT_SECONDS": "2",
    "AGENTS_MCP_CONNECT_TIMEOUT_SECONDS": "2",
    "AGENTS_MCP_MAX_OUTPUT_CHARS": "1000",
    "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"com.example.caller={'s' * 40}",
}
# A proven plugin calling the bridge: its id and the credential the admin issued to it.
PLUGIN_HEADERS = {"Mattermost-Plugin-ID": "com.example.caller", "X-Agents-Plugin-Secret": "s" * 40}


@dataclass
class World:
    h: ClusterHarness
    admin: FakeUser
    jira: FakeMcpServer
    wiki: FakeMcpServer
    watcher: FakeUser

    def user(self, name: str) -> FakeUser:
        return self.h.mattermost.add_user(name)

    def servers(self, *extra: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"name": "jira", "enabled": True, "baseURL": self.jira.url, "headers": {"Authorization": SECRET_HEADER}},
            {
                "name": "wiki",
                "enabled": True,
                "baseURL": self.wiki.url,
                "tool_configs": [
                    {"name": "add", "enabled": False, "policy": "ask"},
                    {"name": "echo", "enabled": True, "policy": "auto_run_everywhere"},
                ],
            },
            *extra,
        ]

    async def configure(self, servers: list[dict[str, Any]], *, within: float = 20) -> None:
        """Save the servers, then wait until the mcp service lists exactly them (as a watcher user)."""
        document = {"services": [SERVICE], "mcp": {"servers": servers}}
        status, body, _ = await self.h.request("PUT", "/admin/config", user=self.admin, json_body=document)
        assert status == 200, body
        watcher = self.watcher
        names = sorted(s["name"] for s in servers if s["enabled"])

        async def applied() -> bool:
            status, body = await self.h.get("/mcp/tools", user=watcher)
            return status == 200 and sorted(s["name"] for s in body["servers"]) == names

        await poll(applied, within=within, interval=0.1, message=f"the mcp service never listed {names}")

    async def call(
        self, user: FakeUser, origin: str, tool: str, arguments: dict[str, Any], *, address: str = ""
    ) -> mcp_pb2.CallToolResponse:
        args = struct_pb2.Struct()
        args.update(arguments)
        async with grpc.aio.insecure_channel(address or self.h.cluster.address("mcp")) as channel:  # type: ignore[union-attr]
            return await mcp_pb2_grpc.MCPStub(channel).CallTool(
                mcp_pb2.CallToolRequest(server_origin=origin, tool_name=tool, arguments=args),
                metadata=self.h.metadata(Identity(user_id=user.id)),
                timeout=10,
            )


@dataclass
class Agent:
    """An agent with its bot, and a user's DM with it."""

    world: World
    id: str
    user: FakeUser
    dm_id: str

    def context(self) -> tools_pb2.ToolContext:
        return tools_pb2.ToolContext(
            user_id=self.user.id, agent_id=self.id, channel_id=self.dm_id, is_direct_message=True
        )

    async def list_tools(self) -> dict[str, tools_pb2.Tool]:
        async with self.world.h.channel("tools") as channel:
            reply = await tools_pb2_grpc.ToolsStub(channel).ListTools(
                tools_pb2.ListToolsRequest(context=self.context()), metadata=self.world.h.metadata(), timeout=10
            )
        return {t.name: t for t in reply.tools}

    async def execute(self, tool: str, arguments: dict[str, Any]) -> tools_pb2.ExecuteToolResponse:
        args = struct_pb2.Struct()
        args.update(arguments)
        async with self.world.h.channel("tools") as channel:
            return await tools_pb2_grpc.ToolsStub(channel).ExecuteTool(
                tools_pb2.ExecuteToolRequest(context=self.context(), tool_name=tool, arguments=args),
                metadata=self.world.h.metadata(),
                timeout=10,
            )


async def new_agent(world: World, name: str, user: FakeUser, **columns: object) -> Agent:
    mm = world.h.mattermost
    bot = mm.add_user(f"{name}-bot", is_bot=True)
    agent_id = await insert_agent(world.h.database_url, name, bot.id, **columns)
    return Agent(world, agent_id, user, mm.add_direct_channel(user, bot).id)


def selection(*refs: tuple[str, str]) -> str:
    return json.dumps([{"server_origin": origin, "tool_name": tool} for origin, tool in refs])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with (
        FakeMcpServer("jira", legacy=True) as jira,
        FakeMcpServer("wiki") as wiki,
        ClusterHarness(postgres, env=ENV) as h,
    ):
        admin = h.mattermost.add_user("root", roles="system_user system_admin")
        w = World(h, admin, jira, wiki, h.mattermost.add_user("watcher"))
        await w.configure(w.servers())
        yield w


# --- configuration -------------------------------------------------------------------------------


async def test_custom_headers_are_masked_on_read_and_still_sent_to_the_server(world: World) -> None:
    status, config = await world.h.get("/admin/config", user=world.admin)
    assert status == 200
    jira = next(s for s in config["mcp"]["servers"] if s["name"] == "jira")
    assert jira["headers"] == {"Authorization": "********"}
    assert SECRET_HEADER not in json.dumps(config)
    # Saving the masked document back keeps the stored value.
    status, body, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=config)
    assert status == 200, body
    await world.call(world.user("hedda"), world.jira.url, "echo", {"text": "hi"})
    assert world.jira.headers_seen[-1]["authorization"] == SECRET_HEADER


async def test_a_header_with_a_line_break_is_refused_with_400_naming_it(world: World) -> None:
    bad = world.servers()
    bad[0]["headers"] = {"X-Team": "a\r\nX-Injected: yes"}
    status, body, _ = await world.h.request(
        "PUT", "/admin/config", user=world.admin, json_body={"mcp": {"servers": bad}}
    )
    assert status == 400
    assert "mcp.servers[jira].headers.X-Team" in body["error"]


# --- per-user sessions -----------------------------------------------------------------------------


async def test_one_initialize_per_user_however_many_calls_and_listings(world: World) -> None:
    ada, bo = world.user("ada"), world.user("bo")
    before = world.jira.handshakes
    # Concurrent first calls of one user share one session; each user gets their own.
    results = await asyncio.gather(
        *(world.call(u, world.jira.url, "add", {"a": i, "b": 1}) for u in (ada, bo) for i in range(4))
    )
    assert [r.content for r in results] == ["1", "2", "3", "4"] * 2
    for _ in range(3):
        status, _ = await world.h.get("/mcp/tools", user=ada)
        assert status == 200
    assert world.jira.handshakes - before == 2


async def test_the_users_tools_list_each_server_with_the_admins_settings(world: World) -> None:
    cleo = world.user("cleo")
    status, body = await world.h.get("/mcp/tools", user=cleo)
    assert status == 200
    assert_matches_openapi("GET", "/mcp/tools", 200, body)
    servers = {s["name"]: s for s in body["servers"]}
    assert servers["jira"]["serverOrigin"] == world.jira.url
    assert {t["name"] for t in servers["jira"]["tools"]} == {"echo", "add", "big", "locate", "fail", "hang"}
    wiki = {t["name"]: t for t in servers["wiki"]["tools"]}
    assert (wiki["add"]["enabled"], wiki["echo"]["policy"], wiki["fail"]["policy"]) == (
        False,
        "auto_run_everywhere",
        "ask",
    )


async def test_a_tool_the_admin_disabled_is_refused_without_calling_the_server(world: World) -> None:
    dora = world.user("dora")
    calls = world.wiki.methods["tools/call"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.call(dora, world.wiki.url, "add", {"a": 1, "b": 2})
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert world.wiki.methods["tools/call"] == calls


async def test_a_tool_error_is_reported_as_the_tools_output(world: World) -> None:
    reply = await world.call(world.user("egon"), world.jira.url, "fail", {})
    assert reply.is_error and "always fails" in reply.content


async def test_a_long_output_is_cut_for_the_model_with_a_note(world: World) -> None:
    reply = await world.call(world.user("walt"), world.jira.url, "big", {"n": 5000})
    assert reply.content.startswith("x" * 1000) and reply.content.count("x") == 1000
    assert reply.content.endswith("[output truncated: 4000 more characters]")


async def test_a_hung_call_is_cut_at_the_deadline_while_other_users_calls_go_through(world: World) -> None:
    fay, gus = world.user("fay"), world.user("gus")
    hung = asyncio.create_task(world.call(fay, world.jira.url, "hang", {}))
    await poll(lambda: world.jira.hanging >= 1, within=10, message="the hang tool was never called")
    # While fay's call hangs, gus's calls to the same server and fay's own to it and to another
    # server answer: calls on one session are not serialised behind each other.
    assert (await world.call(gus, world.jira.url, "echo", {"text": "still here"})).content == "still here"
    assert (await world.call(fay, world.jira.url, "echo", {"text": "beside it"})).content == "beside it"
    assert (await world.call(fay, world.wiki.url, "echo", {"text": "me too"})).content == "me too"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await hung
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "did not answer in time" in (err.value.details() or "")
    # The cut session is gone; fay's next call opens a new one and works.
    before = world.jira.handshakes
    assert (await world.call(fay, world.jira.url, "echo", {"text": "again"})).content == "again"
    assert world.jira.handshakes - before == 1


async def test_a_server_that_never_answers_shows_an_error_and_holds_up_no_one(world: World) -> None:
    async with HangingServer() as hanging:
        await world.configure(world.servers({"name": "stuck", "enabled": True, "baseURL": hanging.url}))
        try:
            hal, ida = world.user("hal"), world.user("ida")
            listing = asyncio.create_task(world.h.get("/mcp/tools", user=hal))
            await poll(lambda: hanging.connections >= 1, within=10, message="the stuck server was never contacted")
            assert (await world.call(ida, world.jira.url, "echo", {"text": "fine"})).content == "fine"
            status, body = await listing
            assert status == 200
            servers = {s["name"]: s for s in body["servers"]}
            assert servers["stuck"]["tools"] == [] and servers["jira"]["tools"]
        finally:
            await world.configure(world.servers())


async def test_a_server_the_outbound_guard_refuses_is_never_contacted(world: World) -> None:
    async with FakeMcpServer("private") as private:
        # localhost is not the host the operator opened (127.0.0.1): it resolves to a loopback address.
        url = private.url.replace("127.0.0.1", "localhost")
        await world.configure(world.servers({"name": "private", "enabled": True, "baseURL": url}))
        try:
            status, body = await world.h.get("/admin/mcp/tools", user=world.admin)
            assert status == 200
            refused = next(s for s in body["servers"] if s["name"] == "private")
            assert "outbound policy" in refused["error"] and "127.0.0.1" not in refused["error"]
            assert private.requests == 0
        finally:
            await world.configure(world.servers())


async def test_a_disabled_server_is_not_contacted_even_for_the_admins_status(world: World) -> None:
    async with FakeMcpServer("off") as off:
        servers = world.servers({"name": "off", "enabled": False, "baseURL": off.url})
        await world.configure(servers)
        try:
            status, body = await world.h.get("/admin/mcp/tools", user=world.admin)
            assert status == 200
            assert_matches_openapi("GET", "/admin/mcp/tools", 200, body)
            shown = {s["name"]: s for s in body["servers"]}
            assert shown["off"]["enabled"] is False and shown["off"]["tools"] == []
            assert shown["jira"]["serverType"] == "remote" and len(shown["jira"]["tools"]) == 6
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await world.call(world.user("jon"), off.url, "echo", {"text": "x"})
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert off.requests == 0
        finally:
            await world.configure(world.servers())


async def test_clearing_the_cache_lists_the_tools_again(world: World) -> None:
    kai = world.user("kai")
    await world.h.get("/mcp/tools", user=kai)
    listed = world.jira.methods["tools/list"]
    await world.h.get("/mcp/tools", user=kai)
    assert world.jira.methods["tools/list"] == listed
    status, body, _ = await world.h.request("POST", "/admin/mcp/tools/cache/clear", user=world.admin)
    assert status == 200
    assert_matches_openapi("POST", "/admin/mcp/tools/cache/clear", 200, body)
    assert body["cleared_servers"] >= 1
    await world.h.get("/mcp/tools", user=kai)
    assert world.jira.methods["tools/list"] == listed + 1


async def test_a_tool_call_has_its_span_and_carries_the_trace_in_params_meta(world: World) -> None:
    await world.call(world.user("lea"), world.jira.url, "echo", {"text": "traced"})

    def found(spans: list[dict[str, Any]]) -> bool:
        return any(s["name"] == "MCP tool call" and s["attributes"].get("agents.mcp.tool") == "echo" for s in spans)

    spans = await world.h.wait_for_spans(found)
    span = next(s for s in reversed(spans) if s["name"] == "MCP tool call")
    assert span["service"] == "mcp" and span["attributes"]["agents.mcp.server"] == "jira"
    call = next(m for m in reversed(world.jira.messages) if m["method"] == "tools/call")
    traceparent = call["params"]["_meta"]["traceparent"]
    assert traceparent.split("-")[1] == span["trace_id"]


@contextlib.asynccontextmanager
async def mcp_replica(world: World, name: str, **settings: str) -> AsyncIterator[str]:
    """Another mcp process with its own settings; yields its address."""
    cluster = world.h.cluster
    assert cluster is not None
    port = free_port(cluster.config.host)
    env = {**cluster.environment(), "AGENTS_MCP_GRPC_PORT": str(port), **settings}
    await cluster.start_service(name, env, module="mcp")
    try:
        await wait_serving(port)
        yield f"{cluster.config.host}:{port}"
    finally:
        await cluster.stop_service(name, grace=10)


async def test_removing_a_server_closes_its_sessions(world: World) -> None:
    await world.call(world.user("vic"), world.jira.url, "echo", {"text": "open"})
    deletes = world.jira.http_methods["DELETE"]
    await world.configure([s for s in world.servers() if s["name"] != "jira"])
    try:
        await poll(
            lambda: world.jira.http_methods["DELETE"] > deletes, within=10, message="jira's sessions stayed open"
        )
    finally:
        await world.configure(world.servers())


async def test_the_mcp_logs_name_servers_never_their_address_or_session_ids(world: World) -> None:
    await world.call(world.user("una"), world.jira.url, "echo", {"text": "quiet"})
    address = world.jira.url.split("//")[1].split("/")[0]
    session_ids = {h["mcp-session-id"] for h in world.jira.headers_seen if "mcp-session-id" in h}
    assert session_ids
    leaks = [line for line in world.h.logs["mcp"] if address in line or any(s in line for s in session_ids)]
    assert not leaks


async def test_idle_sessions_close_and_the_next_call_initializes_again(world: World) -> None:
    """A replica with a short idle timeout (the setting overrides idleTimeoutMinutes)."""
    async with mcp_replica(world, "mcp-idle", AGENTS_MCP_IDLE_TIMEOUT_SECONDS="0.5") as address:
        max_ = world.user("max")
        handshakes, deletes = world.jira.handshakes, world.jira.http_methods["DELETE"]
        await world.call(max_, world.jira.url, "echo", {"text": "one"}, address=address)
        assert world.jira.handshakes - handshakes == 1
        await poll(
            lambda: world.jira.http_methods["DELETE"] > deletes,
            within=10,
            message="the idle session was never closed",
        )
        await world.call(max_, world.jira.url, "echo", {"text": "two"}, address=address)
        assert world.jira.handshakes - handshakes == 2


async def test_at_the_per_user_cap_the_least_recently_used_session_is_closed(world: World) -> None:
    async with mcp_replica(world, "mcp-cap", AGENTS_MCP_MAX_SESSIONS_PER_USER="1") as address:
        ria, sam = world.user("ria"), world.user("sam")
        handshakes, deletes = world.jira.handshakes, world.jira.http_methods["DELETE"]
        await world.call(ria, world.jira.url, "echo", {"text": "1"}, address=address)
        await world.call(sam, world.jira.url, "echo", {"text": "1"}, address=address)  # another user: no eviction
        await world.call(ria, world.wiki.url, "echo", {"text": "2"}, address=address)  # ria's jira session goes
        await poll(lambda: world.jira.http_methods["DELETE"] == deletes + 1, within=10, message="no session closed")
        await world.call(sam, world.jira.url, "echo", {"text": "3"}, address=address)  # sam's is still open
        await world.call(ria, world.jira.url, "echo", {"text": "3"}, address=address)  # ria's opens again
        assert world.jira.handshakes - handshakes == 3


async def test_a_server_answering_401_is_shown_as_needing_oauth(world: World) -> None:
    async with FakeMcpServer("locked", bearer="only-with-a-grant") as locked:
        await world.configure(world.servers({"name": "locked", "enabled": True, "baseURL": locked.url}))
        try:
            status, body = await world.h.get("/mcp/tools", user=world.user("tia"))
            assert status == 200
            assert_matches_openapi("GET", "/mcp/tools", 200, body)
            shown = next(s for s in body["servers"] if s["name"] == "locked")
            assert (shown["needsOAuth"], shown["tools"]) == (True, [])
        finally:
            await world.configure(world.servers())


# --- agents: remote tools in the tools service -------------------------------------------------------


async def test_an_agent_gets_only_its_selected_servers_tools_and_other_servers_hear_nothing(world: World) -> None:
    async with FakeMcpServer("vault") as vault:
        await world.configure(world.servers({"name": "vault", "enabled": True, "baseURL": vault.url}))
        try:
            requests = vault.requests
            agent = await new_agent(
                world,
                "picky",
                world.user("nora"),
                enabledtools=selection((world.jira.url, "echo"), (world.wiki.url, "*")),
            )
            tools = await agent.list_tools()
            assert tools["echo"].server_origin == world.jira.url and not tools["echo"].auto_approved
            assert "fail" in tools and tools["fail"].server_origin == world.wiki.url  # the whole wiki server
            assert "add" not in tools  # jira's add is not selected and wiki's is disabled by the admin
            assert "read_post" not in tools  # no built-in tool selected either
            reply = await agent.execute("echo", {"text": "from the agent"})
            assert (reply.content, reply.is_error) == ("from the agent", False)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await agent.execute("add", {"a": 1, "b": 2})
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert vault.requests == requests  # not one request for this agent
        finally:
            await world.configure(world.servers())


async def test_an_agent_without_remote_tools_contacts_no_server(world: World) -> None:
    jira, wiki = world.jira.requests, world.wiki.requests
    agent = await new_agent(world, "plain", world.user("otto"), enabledtools=selection(("embedded://mattermost", "*")))
    tools = await agent.list_tools()
    assert "read_post" in tools and "echo" not in tools
    with pytest.raises(grpc.aio.AioRpcError):
        await agent.execute("echo", {"text": "x"})
    assert (world.jira.requests, world.wiki.requests) == (jira, wiki)


async def test_auto_enable_all_offers_every_servers_tools_with_the_admins_policy(world: World) -> None:
    agent = await new_agent(world, "eager", world.user("pia"), autoenablenewmcptools=True)
    tools = await agent.list_tools()
    # jira comes first in the configuration, so its echo wins the name; wiki's add is disabled.
    assert tools["echo"].server_origin == world.jira.url
    assert tools["add"].server_origin == world.jira.url
    assert (await agent.execute("add", {"a": 2, "b": 3})).content == "5"


async def test_saving_an_agent_drops_the_tools_its_servers_no_longer_offer(world: World) -> None:
    jira, gone = world.jira.url, "http://127.0.0.1:9/mcp"  # gone: a server no longer configured
    chosen = [(jira, "echo"), (jira, "retired"), (gone, "x"), ("embedded://mattermost", "read_post")]
    agent = await new_agent(world, "saver", world.user("quin"), enabledtools=selection(*chosen))
    wiki = world.wiki.requests
    status, body = await world.h.get(f"/agents/{agent.id}", user=world.admin)
    assert status == 200
    status, saved, _ = await world.h.request("PUT", f"/agents/{agent.id}", user=world.admin, json_body=body)
    assert status == 200, saved
    assert saved["droppedMCPTools"] == [
        {"server_origin": jira, "tool_name": "retired"},
        {"server_origin": gone, "tool_name": "x"},
    ]
    assert [(t["server_origin"], t["tool_name"]) for t in saved["enabledMCPTools"]] == [
        (jira, "echo"),
        ("embedded://mattermost", "read_post"),
    ]
    assert world.wiki.requests == wiki  # a server the agent does not use is not asked


async def test_the_bridge_lists_an_agents_mcp_tools_for_the_named_user(world: World) -> None:
    yan = world.user("yan")
    chosen = [(world.jira.url, "echo"), ("embedded://mattermost", "*")]
    await new_agent(world, "bridged", yan, enabledtools=selection(*chosen))
    path = "/bridge/v1/agents/bridged/tools"
    status, body, _ = await world.h.request("GET", f"{path}?user_id={yan.id}", headers=PLUGIN_HEADERS)
    assert status == 200, body
    assert_matches_openapi("GET", "/bridge/v1/agents/{agent}/tools", 200, body)
    assert body == {"tools": [{"name": "echo", "description": "Echo the text back.", "server_origin": world.jira.url}]}
    # Without a user there is no one for the tools to run as.
    status, body, _ = await world.h.request("GET", path, headers=PLUGIN_HEADERS)
    assert (status, body) == (200, {"tools": []})


# --- metrics ---------------------------------------------------------------------------------------

CALL_DURATION = "agents_mcp_tool_call_duration_seconds"


async def call_durations(world: World) -> list[Sample]:
    assert world.h.cluster is not None and world.h.http is not None
    async with world.h.http.get(world.h.cluster.metrics_url("mcp")) as resp:
        assert resp.status == 200
        text = await resp.text()
    families = text_string_to_metric_families(text)
    return [s for family in families if family.name == CALL_DURATION for s in family.samples]


def call_count(samples: list[Sample], **labels: str) -> float:
    return sum(s.value for s in samples if s.name == f"{CALL_DURATION}_count" and labels.items() <= s.labels.items())


async def test_each_tool_call_is_timed_by_server_and_outcome_with_no_user_or_argument(world: World) -> None:
    zed = world.user("zed")
    sentinel = "metric-sentinel-7f3a"
    before = await call_durations(world)
    assert (await world.call(zed, world.jira.url, "echo", {"text": sentinel})).content == sentinel
    assert (await world.call(zed, world.jira.url, "fail", {})).is_error
    with pytest.raises(grpc.aio.AioRpcError):
        await world.call(zed, world.jira.url, "hang", {})
    after = await call_durations(world)
    counted = {
        o: call_count(after, server="jira", outcome=o) - call_count(before, server="jira", outcome=o)
        for o in ("ok", "error", "timeout")
    }
    assert counted == {"ok": 1, "error": 1, "timeout": 1}
    # The timed-out call took at least the call timeout (2 s): the histogram holds real durations.
    timed_out = [
        s for s in after if s.name == f"{CALL_DURATION}_sum" and s.labels == {"server": "jira", "outcome": "timeout"}
    ]
    assert timed_out and timed_out[0].value >= 2
    assert {key for s in after for key in s.labels} <= {"server", "outcome", "le"}
    assert all(zed.id not in v and sentinel not in v for s in after for v in s.labels.values())


async def test_a_call_its_caller_cancels_is_timed_as_cancelled_not_as_an_error(world: World) -> None:
    cy = world.user("cy")
    before = await call_durations(world)
    hanging = world.jira.hanging
    args = struct_pb2.Struct()
    async with grpc.aio.insecure_channel(world.h.cluster.address("mcp")) as channel:  # type: ignore[union-attr]
        call = mcp_pb2_grpc.MCPStub(channel).CallTool(
            mcp_pb2.CallToolRequest(server_origin=world.jira.url, tool_name="hang", arguments=args),
            metadata=world.h.metadata(Identity(user_id=cy.id)),
            timeout=10,
        )
        await poll(lambda: world.jira.hanging > hanging, within=10, message="the hang tool was never called")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    async def counted() -> dict[str, float] | None:
        after = await call_durations(world)
        delta = {
            o: call_count(after, server="jira", outcome=o) - call_count(before, server="jira", outcome=o)
            for o in ("ok", "error", "timeout", "cancelled")
        }
        return delta if sum(delta.values()) else None

    assert await poll(counted, within=10, message="the cancelled call was never timed") == {
        "ok": 0,
        "error": 0,
        "timeout": 0,
        "cancelled": 1,
    }
    # Nor does its span say the call failed.
    spans = await world.h.wait_for_spans(
        lambda spans: any(
            s["name"] == "MCP tool call" and s["attributes"].get("agents.user.id") == cy.id for s in spans
        )
    )
    span = next(s for s in spans if s["name"] == "MCP tool call" and s["attributes"].get("agents.user.id") == cy.id)
    assert span["status"] != "ERROR"
