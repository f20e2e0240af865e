"""Remote MCP servers re-exported through the Mattermost MCP server (``expose_external``): real
SDK-built servers (a plain one with an admin header, one behind OAuth, one not exported, one that
hangs), the SDK's client as the external client with a user's PAT, through the gateway."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.fakes.mattermost.state import FakeUser
from tests.fakes.mcp_remote import FakeMcpServer, HangingServer
from tests.fakes.oauth_server import FakeAuthServer
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.test_mcp_oauth import World as OAuthWorld
from tests.integration.test_mcp_server import ACCEPT, ENDPOINT, MODERN, TEN_TOOLS, modern_tools_call, text_of
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN_HEADER = "admin-configured-key"
ENV = {
    "AGENTS_INDEX_LICENSE": "enterprise",
    "AGENTS_MCP_PRIVATE_ALLOWED_HOSTNAMES": "127.0.0.1",
    "AGENTS_MCP_CALL_TIMEOUT_SECONDS": "2",
    "AGENTS_MCP_CONNECT_TIMEOUT_SECONDS": "2",
    "AGENTS_MCP_TOKEN_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
}
# The plain server's tools a user sees (``add`` is disabled on both servers); the OAuth server's
# clash with them, so a connected user gets only its ``meet`` besides.
PLAIN_TOOLS = {"echo", "big", "locate", "fail", "hang"}


@dataclass
class World:
    h: ClusterHarness
    admin: FakeUser
    plain: FakeMcpServer
    vault: FakeMcpServer
    unexported: FakeMcpServer
    oauth: OAuthWorld

    def servers(self, *first: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            *first,
            {
                "name": "plain",
                "enabled": True,
                "expose_external": True,
                "baseURL": self.plain.url,
                "headers": {"X-Api-Key": ADMIN_HEADER},
                "tool_configs": [
                    {"name": "echo", "enabled": True, "policy": "auto_run_everywhere"},
                    {"name": "locate", "enabled": True, "policy": "auto_run_everywhere"},
                    {"name": "add", "enabled": False, "policy": "auto_run_everywhere"},
                ],
            },
            {
                "name": "vault",
                "enabled": True,
                "expose_external": True,
                "baseURL": self.vault.url,
                "tool_configs": [
                    {"name": "meet", "enabled": True, "policy": "auto_run_in_dm"},
                    {"name": "add", "enabled": False, "policy": "auto_run_everywhere"},
                ],
            },
            {"name": "unexported", "enabled": True, "baseURL": self.unexported.url},
        ]

    async def configure(self, servers: list[dict[str, Any]]) -> None:
        """Save the servers with the MCP server on; wait until the mcp service lists them."""
        document = {"mcp": {"enablePluginServer": True, "servers": servers}}
        status, body, _ = await self.h.request("PUT", "/admin/config", user=self.admin, json_body=document)
        assert status == 200, body
        watcher = self.h.mattermost.add_user(f"export-watcher-{secrets.token_hex(4)}")
        names = [s["name"] for s in servers]

        async def applied() -> bool:
            status, _, _ = await self.h.request("GET", "/mcp-server/.well-known/oauth-protected-resource")
            listed, body = await self.h.get("/mcp/tools", user=watcher)
            return status == 200 and listed == 200 and [s["name"] for s in body["servers"]] == names

        await poll(applied, within=30, interval=0.1, message=f"the mcp service never listed {names}")

    async def modern_call(
        self, user: FakeUser, tool: str, arguments: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """A raw 2026-07-28 tools/call through the gateway, with the headers that era sends."""
        call = modern_tools_call(1, tool, arguments)
        sent = {
            "Authorization": f"Bearer {user.token}",
            "Content-Type": "application/json",
            "Accept": ACCEPT,
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call",
            "Mcp-Name": tool,
            **(headers or {}),
        }
        assert self.h.http is not None
        async with self.h.http.post(f"{self.h.gateway_url}{ENDPOINT}", json=call, headers=sent) as resp:
            return resp.status, await resp.json()

    def client(self, user: FakeUser) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {user.token}"})
        return Client(streamable_http_client(f"{self.h.gateway_url}{ENDPOINT}", http_client=http))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeAuthServer() as auth:
        async with (
            FakeMcpServer("plain") as plain,
            FakeMcpServer("vault", oauth=auth) as vault,
            FakeMcpServer("unexported") as unexported,
            ClusterHarness(postgres, env=ENV) as h,
        ):
            admin = h.mattermost.add_user("export-root", roles="system_user system_admin")
            w = World(h, admin, plain, vault, unexported, OAuthWorld(h, auth, vault, unexported, admin))
            await w.configure(w.servers())
            yield w


async def test_the_admin_marks_a_server_exported_and_sees_it_in_the_listings(world: World) -> None:
    status, config, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert status == 200
    assert [s.get("expose_external") for s in config["mcp"]["servers"]] == [True, True, False]
    status, body = await world.h.get("/admin/mcp/tools", user=world.admin)
    assert status == 200, body
    assert {s["name"]: s["expose_external"] for s in body["servers"]} == {
        "plain": True,
        "vault": True,
        "unexported": False,
    }


async def test_a_flag_that_is_not_a_boolean_is_a_400_naming_it(world: World) -> None:
    servers = world.servers()
    servers[0]["expose_external"] = "yes"
    document = {"mcp": {"enablePluginServer": True, "servers": servers}}
    status, body, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=document)
    assert status == 400 and "expose_external" in body["error"], body


async def test_a_connected_user_lists_and_calls_the_exported_tools_with_their_own_grant(world: World) -> None:
    ida = world.h.mattermost.add_user("export-ida")
    await world.oauth.connect(ida)
    unexported_before, plain_calls = world.unexported.requests, world.plain.methods["tools/call"]
    handshakes = world.plain.handshakes
    async with world.client(ida) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert listed == TEN_TOOLS | PLAIN_TOOLS | {"meet"}
        echoed = await client.call_tool("echo", {"text": "through the export"})
        met = await client.call_tool("meet", {"n": 1})
    assert not echoed.is_error and text_of(echoed) == "through the export"
    assert not met.is_error and text_of(met) == "met"
    # A clash goes to the first server in the configuration.
    assert world.plain.methods["tools/call"] == plain_calls + 1
    # One session of this user with the server served the listing and every call (three requests).
    assert world.plain.handshakes == handshakes + 1
    assert world.unexported.requests == unexported_before


async def test_a_user_without_a_grant_is_told_where_to_connect_and_never_uses_anothers(world: World) -> None:
    connected, jon = world.h.mattermost.add_user("export-kim"), world.h.mattermost.add_user("export-jon")
    await world.oauth.connect(connected)
    vault_calls = world.vault.methods["tools/call"]
    async with world.client(jon) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TEN_TOOLS | PLAIN_TOOLS
        refused = await client.call_tool("meet", {"n": 1})
    assert refused.is_error
    assert "vault" in text_of(refused) and f"{PLUGIN}/mcp/oauth/vault/start" in text_of(refused)
    assert world.vault.methods["tools/call"] == vault_calls


async def test_a_grant_revoked_since_the_listing_answers_where_to_connect_again(world: World) -> None:
    pat = world.h.mattermost.add_user("export-pat")
    await world.oauth.connect(pat)
    async with world.client(pat) as client:
        assert "meet" in {tool.name for tool in (await client.list_tools()).tools}
        world.oauth.auth.valid.clear()  # the authorization server revoked every token it issued
        refused = await client.call_tool("meet", {"n": 1})
    assert refused.is_error
    assert "needs your account at MCP server vault" in text_of(refused)
    assert f"{PLUGIN}/mcp/oauth/vault/start" in text_of(refused)


async def test_the_remote_servers_never_see_the_clients_token(world: World) -> None:
    lea = world.h.mattermost.add_user("export-lea")
    await world.oauth.connect(lea)
    async with world.client(lea) as client:
        await client.list_tools()
        assert not (await client.call_tool("echo", {"text": "hi"})).is_error
        assert not (await client.call_tool("meet", {"n": 1})).is_error
    for server in (world.plain, world.vault):
        seen = json.dumps(server.headers_seen)
        assert server.headers_seen and lea.token not in seen, server.name
    assert any(h.get("x-api-key") == ADMIN_HEADER for h in world.plain.headers_seen)
    assert any(
        h.get("authorization", "").removeprefix("Bearer ") in world.oauth.auth.valid for h in world.vault.headers_seen
    )


async def test_a_disabled_tool_is_absent_and_cannot_be_called(world: World) -> None:
    max_ = world.h.mattermost.add_user("export-max")
    await world.oauth.connect(max_)
    calls = world.plain.methods["tools/call"] + world.vault.methods["tools/call"]
    async with world.client(max_) as client:
        listed = {tool.name for tool in (await client.list_tools()).tools}
        assert "add" not in listed and "echo" in listed  # disabled on both servers; echo is not
        refused = await client.call_tool("add", {"a": 1, "b": 2})
    assert refused.is_error and "unknown tool 'add'" in text_of(refused)
    assert world.plain.methods["tools/call"] + world.vault.methods["tools/call"] == calls


async def test_a_tool_that_asks_first_is_refused_for_an_external_client_cannot_approve(world: World) -> None:
    ned = world.h.mattermost.add_user("export-ned")
    calls = world.plain.methods["tools/call"]
    async with world.client(ned) as client:
        refused = await client.call_tool("fail", {})
    assert refused.is_error and "approval" in text_of(refused) and "plain" in text_of(refused)
    assert world.plain.methods["tools/call"] == calls


async def test_a_hung_exported_server_leaves_the_others_tools_listed(world: World) -> None:
    async with HangingServer() as hanging:
        stuck = {"name": "stuck", "enabled": True, "expose_external": True, "baseURL": hanging.url}
        await world.configure(world.servers(stuck))
        try:
            oli = world.h.mattermost.add_user("export-oli")
            async with world.client(oli) as client:
                listed = {tool.name for tool in (await client.list_tools()).tools}
                echoed = await client.call_tool("echo", {"text": "still here"})
            assert hanging.connections
            assert listed == TEN_TOOLS | PLAIN_TOOLS
            assert not echoed.is_error and text_of(echoed) == "still here"
        finally:
            await world.configure(world.servers())


async def test_an_exported_tools_param_header_reaches_the_server_which_checks_it_against_the_body(
    world: World,
) -> None:
    # A 2026-07-28 client mirrors an x-mcp-header argument into Mcp-Param-*, and the server refuses
    # a call whose header is missing or disagrees: a gateway that dropped it failed every such call.
    uma = world.h.mattermost.add_user("export-uma")
    async with world.client(uma) as client:
        await client.list_tools()
        located = await client.call_tool("locate", {"region": "eu-west"})
    assert not located.is_error and text_of(located) == "eu-west"
    # Our client, listing before it calls, mirrors it to the remote server in turn.
    assert any(h.get("mcp-param-region") == "eu-west" for h in world.plain.headers_seen)
    status, body = await world.modern_call(uma, "locate", {"region": "eu-west"}, {"Mcp-Param-Region": "us-east"})
    assert status == 400 and "Mcp-Param-Region header does not match" in body["error"]["message"], (status, body)


async def test_a_mattermost_tool_call_contacts_no_re_exported_server(world: World) -> None:
    # The server checks a 2026-07-28 call's Mcp-Param-* headers against its tool's schema: for a
    # Mattermost tool it knows that schema, where it used to list every tool, the re-exported
    # servers' included, for each call (a session opened with each server for a user who never
    # listed them).
    vic = world.h.mattermost.add_user("export-vic")
    before = (world.plain.requests, world.vault.requests, world.unexported.requests)
    status, body = await world.modern_call(vic, "get_team_info", {"team_id": "nosuchteam"})
    assert status == 200 and body["result"]["isError"], (status, body)
    assert (world.plain.requests, world.vault.requests, world.unexported.requests) == before
