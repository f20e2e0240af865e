"""Per-user OAuth to remote MCP servers: an SDK server that accepts only the bearer tokens a fake
authorization server issued, the plugin's routes (start, callback, disconnect) through the
gateway, tool calls through the mcp service's gRPC API: start → callback → call → refresh →
disconnect, a replayed and a foreign ``state``, a ``resource_metadata`` on another origin, tokens
kept out of logs, answers and the table, and one user's concurrent calls running side by side."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import psycopg
import pytest
import pytest_asyncio
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from google.protobuf import struct_pb2

from services.common.identity import Identity
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.mcp_remote import FakeMcpServer
from tests.fakes.oauth_server import SENTINEL, FakeAuthServer
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.test_mcp_remote import mcp_replica
from tests.integration.test_mcp_server import switch_the_server
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENV = {
    "AGENTS_INDEX_LICENSE": "enterprise",
    "AGENTS_MCP_PRIVATE_ALLOWED_HOSTNAMES": "127.0.0.1",
    "AGENTS_MCP_CALL_TIMEOUT_SECONDS": "3",
    "AGENTS_MCP_CONNECT_TIMEOUT_SECONDS": "3",
    "AGENTS_MCP_TOKEN_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    # A token with less than this left is refreshed before it is used.
    "AGENTS_MCP_OAUTH_REFRESH_MARGIN_SECONDS": "600",
}


@dataclass
class World:
    h: ClusterHarness
    auth: FakeAuthServer
    vault: FakeMcpServer
    elsewhere: FakeMcpServer
    admin: FakeUser

    def user(self, name: str) -> FakeUser:
        return self.h.mattermost.add_user(name)

    async def browse(self, path_or_url: str, user: FakeUser | None = None) -> tuple[int, str]:
        """A browser's request without following redirects: (status, Location)."""
        assert self.h.http is not None
        url = path_or_url if path_or_url.startswith("http") else f"{self.h.gateway_url}{PLUGIN}{path_or_url}"
        headers = {"Authorization": f"Bearer {user.token}"} if user is not None else {}
        async with self.h.http.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Location", "")

    async def authorize(self, user: FakeUser) -> dict[str, str]:
        """Start as the user and approve at the authorization server: the callback's query."""
        status, location = await self.browse("/mcp/oauth/vault/start", user)
        assert status == 302, location
        assert location.startswith(f"{self.auth.url}/authorize?")
        status, back = await self.browse(location)
        assert status == 302
        assert urlsplit(back).path == f"{PLUGIN}/oauth/callback"
        return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}

    async def callback(self, user: FakeUser, query: dict[str, str]) -> tuple[int, Any]:
        path = f"/oauth/callback?state={query['state']}&code={query['code']}"
        status, body, _ = await self.h.request("GET", path, user=user)
        return status, body

    async def connect(self, user: FakeUser) -> None:
        status, body = await self.callback(user, await self.authorize(user))
        assert status == 200, body

    async def call(
        self, user: FakeUser, tool: str, arguments: dict[str, Any], *, address: str = ""
    ) -> mcp_pb2.CallToolResponse:
        args = struct_pb2.Struct()
        args.update(arguments)
        assert self.h.cluster is not None
        async with grpc.aio.insecure_channel(address or self.h.cluster.address("mcp")) as channel:
            return await mcp_pb2_grpc.MCPStub(channel).CallTool(
                mcp_pb2.CallToolRequest(server_origin=self.vault.url, tool_name=tool, arguments=args),
                metadata=self.h.metadata(Identity(user_id=user.id)),
                timeout=10,
            )

    async def listed(self, user: FakeUser) -> dict[str, Any]:
        status, body = await self.h.get("/mcp/tools", user=user)
        assert status == 200, body
        assert_matches_openapi("GET", "/mcp/tools", 200, body)
        return next(s for s in body["servers"] if s["name"] == "vault")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeAuthServer() as auth:
        async with (
            FakeMcpServer("vault", oauth=auth) as vault,
            FakeMcpServer("elsewhere") as elsewhere,
            ClusterHarness(postgres, env=ENV) as h,
        ):
            admin = h.mattermost.add_user("root", roles="system_user system_admin")
            document = {"mcp": {"servers": [{"name": "vault", "enabled": True, "baseURL": vault.url}]}}
            status, body, _ = await h.request("PUT", "/admin/config", user=admin, json_body=document)
            assert status == 200, body
            w = World(h, auth, vault, elsewhere, admin)
            watcher = w.user("watcher")

            async def applied() -> bool:
                status, body = await h.get("/mcp/tools", user=watcher)
                return status == 200 and [s["name"] for s in body["servers"]] == ["vault"]

            await poll(applied, within=20, interval=0.1, message="the mcp service never listed vault")
            yield w


async def test_start_callback_call_refresh_and_disconnect(world: World) -> None:
    ada = world.user("ada")
    shown = await world.listed(ada)
    assert (shown["needsOAuth"], shown["authenticated"]) == (True, False)
    assert shown["authURL"].endswith(f"{PLUGIN}/mcp/oauth/vault/start")
    status, body = await world.h.get("/admin/mcp/tools", user=world.admin)
    assert status == 200, body
    status_of_vault = next(s for s in body["servers"] if s["name"] == "vault")
    assert status_of_vault["needsOAuth"] and status_of_vault["oauthURL"] == shown["authURL"]

    # The first token is issued about to expire: the first call refreshes it.
    world.auth.expires_in = 30
    await world.connect(ada)
    world.auth.expires_in = 3600
    assert world.auth.registered[-1]["redirect_uris"][0].endswith(f"{PLUGIN}/oauth/callback")
    refreshes = world.auth.grants["refresh_token"]
    assert (await world.call(ada, "echo", {"text": "inside"})).content == "inside"
    assert world.auth.grants["refresh_token"] == refreshes + 1
    # Later calls use the refreshed token as it is.
    assert (await world.call(ada, "echo", {"text": "again"})).content == "again"
    assert world.auth.grants["refresh_token"] == refreshes + 1
    shown = await world.listed(ada)
    assert (shown["needsOAuth"], shown["authenticated"]) == (False, True)
    assert "meet" in {t["name"] for t in shown["tools"]}

    status, body, _ = await world.h.request("DELETE", "/mcp/oauth/vault", user=ada)
    assert status == 200, body
    # Revoked at the server (refresh and access token), and gone here.
    assert len(world.auth.revoked) >= 2
    assert not set(world.auth.revoked) & world.auth.valid
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await world.call(ada, "echo", {"text": "after"})
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await world.listed(ada))["needsOAuth"] is True


async def test_one_users_concurrent_calls_are_not_serialised(world: World) -> None:
    bo = world.user("bo")
    await world.connect(bo)
    world.vault.inside_meet = 0
    # Each call returns only once all four are inside the tool together: serialised calls would
    # never meet and run into the call deadline.
    results = await asyncio.gather(*(world.call(bo, "meet", {"n": 4}) for _ in range(4)))
    assert [r.content for r in results] == ["met"] * 4


async def test_two_replicas_refresh_a_grant_once(world: World) -> None:
    gil = world.user("gil")
    world.auth.expires_in = 30
    await world.connect(gil)
    world.auth.expires_in = 3600
    refreshes = world.auth.grants["refresh_token"]
    async with (
        mcp_replica(world, "mcp-b") as other,  # type: ignore[arg-type]
        await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as db,
    ):

        async def second_one_waits() -> bool:
            # The other replica is held on the grant's row lock (or, without one, refreshes too).
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            waiting = (await (await db.execute(query)).fetchone() or (0,))[0]
            return bool(waiting) or world.auth.grants["refresh_token"] > refreshes + 1

        world.auth.hold_refresh = asyncio.Event()
        try:
            # Both replicas find the token about to expire; the first refresh is held at the
            # authorization server until the other replica is waiting too.
            calls = asyncio.gather(
                world.call(gil, "echo", {"text": "a"}), world.call(gil, "echo", {"text": "b"}, address=other)
            )
            await poll(lambda: world.auth.grants["refresh_token"] > refreshes, within=10, message="no refresh")
            await poll(
                second_one_waits, within=10, interval=0.02, message="the other replica neither waited nor refreshed"
            )
        finally:
            world.auth.hold_refresh.set()
            world.auth.hold_refresh = None
        results = await calls
    assert [r.content for r in results] == ["a", "b"]
    # The waiting replica found the grant fresh: refreshing again would have presented the
    # rotated-out refresh token.
    assert world.auth.grants["refresh_token"] == refreshes + 1


async def test_a_replayed_state_is_refused(world: World) -> None:
    cleo = world.user("cleo")
    query = await world.authorize(cleo)
    assert (await world.callback(cleo, query))[0] == 200
    status, body = await world.callback(cleo, query)
    assert status == 400
    assert "state" in body["error"]


async def test_a_foreign_state_is_refused_and_stays_its_owners(world: World) -> None:
    dora, mallory = world.user("dora"), world.user("mallory")
    query = await world.authorize(dora)
    status, body = await world.callback(mallory, query)
    assert status == 400
    assert "state" in body["error"]
    assert (await world.listed(mallory))["needsOAuth"] is True
    # The owner completes it still.
    assert (await world.callback(dora, query))[0] == 200
    assert (await world.listed(dora))["authenticated"] is True


async def test_a_resource_metadata_on_another_origin_is_refused(world: World) -> None:
    egon = world.user("egon")
    foreign = f"http://127.0.0.1:{world.elsewhere.port}/.well-known/oauth-protected-resource"
    before = world.elsewhere.requests
    status, body, _ = await world.h.request("GET", f"/mcp/oauth/vault/start?resource_metadata={foreign}", user=egon)
    assert status == 400
    assert "resource_metadata" in body["error"]
    # Named by the server's own 401 challenge: refused just the same.
    world.vault.challenge_metadata = foreign
    try:
        status, body, _ = await world.h.request("GET", "/mcp/oauth/vault/start", user=egon)
    finally:
        world.vault.challenge_metadata = f"http://127.0.0.1:{world.vault.port}/.well-known/oauth-protected-resource/mcp"
    assert status == 400
    assert "resource_metadata" in body["error"]
    assert world.elsewhere.requests == before


async def test_an_authorization_server_without_pkce_s256_is_refused(world: World) -> None:
    world.auth.pkce_methods = ["plain"]
    try:
        status, body, _ = await world.h.request("GET", "/mcp/oauth/vault/start", user=world.user("gus"))
    finally:
        world.auth.pkce_methods = ["S256"]
    assert status == 400
    assert "PKCE S256" in body["error"]
    assert world.auth.url.split("//")[1] not in body["error"]  # no address in the answer


async def test_tokens_never_appear_in_logs_answers_spans_or_the_table(world: World) -> None:
    fay = world.user("fay")
    await world.connect(fay)
    assert (await world.call(fay, "echo", {"text": "hi"})).content == "hi"
    listed = await world.listed(fay)
    assert SENTINEL not in json.dumps(listed)
    assert world.auth.valid  # tokens were issued: the checks below look for something real
    logs = "\n".join(line for lines in world.h.logs.values() for line in lines)
    assert SENTINEL not in logs
    assert SENTINEL not in json.dumps(world.h.spans())
    async with await psycopg.AsyncConnection.connect(world.h.database_url) as conn:
        rows = await (await conn.execute("SELECT access_token, refresh_token FROM mcp_oauth_grants")).fetchall()
    assert rows
    assert all(SENTINEL.encode() not in bytes(value) for row in rows for value in row if value is not None)


async def test_one_site_url_makes_both_the_oauth_callback_and_the_mcp_servers_resource_url(world: World) -> None:
    site = "https://chat.example.com"
    cluster = world.h.cluster
    assert cluster is not None and world.h.http is not None
    http = world.h.http
    await switch_the_server(world.h, world.admin, on=True)
    try:
        async with mcp_replica(world, "mcp-site", AGENTS_MCP_SITE_URL=site) as address:
            gateway = await world.h.start_gateway("gateway-site", env={"AGENTS_MCP_ADDR": address})
            try:
                hal = world.user("hal")

                async def started() -> bool:
                    return (await world.browse(f"{gateway}{PLUGIN}/mcp/oauth/vault/start", hal))[0] == 302

                await poll(started, within=20, interval=0.1, message="the mcp replica never served vault")
                _, location = await world.browse(f"{gateway}{PLUGIN}/mcp/oauth/vault/start", hal)
                assert parse_qs(urlsplit(location).query)["redirect_uri"] == [f"{site}{PLUGIN}/oauth/callback"]
                async with http.get(f"{gateway}{PLUGIN}/mcp-server/.well-known/oauth-protected-resource") as resp:
                    assert resp.status == 200
                    document = await resp.json()
                assert document["resource"] == f"{site}{PLUGIN}/mcp-server"
                assert document["authorization_servers"] == [f"{site}/"]
            finally:
                await cluster.stop_service("gateway-site")
    finally:
        await switch_the_server(world.h, world.admin, on=False)
