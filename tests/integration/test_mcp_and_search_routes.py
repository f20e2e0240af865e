"""The plugin's MCP and semantic search routes through the gateway, before their services land:
each is served behind the plugin's guards and answers 501 with a JSON error (the index's and the
mcp service's RPCs answer UNIMPLEMENTED, see tests/unit/foundation/test_service_contracts.py),
never 404; without authentication each answers 401, and non-admins get 403 on admin routes.
The Mattermost MCP server's routes are served: tests/integration/test_mcp_server.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.harness import ClusterHarness, SessionPostgres, insert_agent

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLUGIN_ID = "com.example.caller"
PLUGIN_SECRET = "s" * 40
# A proven plugin: its id and the credential the admin issued to it (session auth mode).
PLUGIN_HEADERS = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": PLUGIN_SECRET}


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as plugin-openapi.yaml names it
    path: str = ""  # the concrete path asked (default: the template)
    body: Any = None
    admin: bool = False
    bridge: bool = False
    served: bool = False  # its feature landed: no longer a 501 (its own suite covers its answers)

    @property
    def url(self) -> str:
        return self.path or self.template


ROUTES = [
    Route("POST", "/search", body={"query": "release plans", "maxResults": 5}, served=True),
    Route("POST", "/search/run", body={"query": "release plans"}, served=True),
    Route("POST", "/search/raw", body={"query": "release plans", "limit": 10}, served=True),
    Route("POST", "/admin/reindex", body={"clearIndex": False}, admin=True, served=True),
    Route("GET", "/admin/reindex/status", admin=True, served=True),
    Route("POST", "/admin/reindex/cancel", admin=True, served=True),
    Route("POST", "/admin/reindex/catchup", admin=True, served=True),
    Route("GET", "/admin/reindex/health-check", admin=True, served=True),
    Route("GET", "/mcp/tools", served=True),
    Route("GET", "/mcp/oauth/{serverName}/start", "/mcp/oauth/github/start", served=True),
    Route("DELETE", "/mcp/oauth/{serverName}", "/mcp/oauth/github", served=True),
    Route("GET", "/mcp/user-preferences", served=True),
    Route("PUT", "/mcp/user-preferences", body={"disabled_servers": ["github"]}, served=True),
    Route("GET", "/oauth/callback", "/oauth/callback?state=s1&code=c1", served=True),
    Route("GET", "/admin/mcp/tools", admin=True, served=True),
    Route(
        "GET",
        "/admin/mcp/vetted-tool-seed",
        "/admin/mcp/vetted-tool-seed?base_url=https://mcp.x.io",
        admin=True,
        served=True,
    ),
    Route("POST", "/admin/mcp/tools/cache/clear", admin=True, served=True),
    Route("PUT", "/admin/mcp/plugin-servers/{pluginID}", "/admin/mcp/plugin-servers/com.x", body={}, admin=True),
    Route("POST", "/bridge/v1/mcp/register", body={"name": "Jira", "path": "/mcp"}, bridge=True),
    Route("POST", "/bridge/v1/mcp/unregister", body={}, bridge=True),
]


@dataclass
class World:
    h: ClusterHarness
    alice: FakeUser
    admin: FakeUser

    async def call(self, route: Route, user: FakeUser | None) -> tuple[int, Any]:
        headers = None
        if route.bridge and user is not None:
            user, headers = None, PLUGIN_HEADERS  # the bridge's callers are plugins, not users
        status, body, _ = await self.h.request(
            route.method, route.url, user=user, json_body=route.body, headers=headers
        )
        return status, body


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with ClusterHarness(
        postgres, env={"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={PLUGIN_SECRET}"}
    ) as h:
        mm = h.mattermost
        bot = mm.add_user("helper", is_bot=True)
        await insert_agent(h.database_url, "helper", bot.id)  # the search routes' aiBotRequired guard
        yield World(h, mm.add_user("alice"), mm.add_user("root", roles="system_user system_admin"))


async def test_every_mcp_and_search_route_answers_501_json_to_a_caller_it_admits(world: World) -> None:
    pending = [r for r in ROUTES if not r.served]
    answers = {(r.method, r.url): await world.call(r, world.admin if r.admin else world.alice) for r in pending}
    wrong = {route: answer for route, answer in answers.items() if answer[0] != 501}
    assert not wrong
    for _, body in answers.values():
        assert isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


async def test_every_mcp_and_search_route_refuses_an_unauthenticated_caller_with_401(world: World) -> None:
    for route in ROUTES:
        status, body = await world.call(route, None)
        assert status == 401, (route.method, route.url, status, body)
        assert_matches_openapi(route.method, route.template, 401, body)


async def test_the_admin_routes_refuse_a_member_with_403(world: World) -> None:
    for route in [r for r in ROUTES if r.admin]:
        status, body = await world.call(route, world.alice)
        assert status == 403, (route.method, route.url, status, body)
        assert_matches_openapi(route.method, route.template, 403, body)


async def test_a_user_cannot_register_mcp_servers_by_claiming_to_be_a_plugin(world: World) -> None:
    for route in [r for r in ROUTES if r.bridge]:
        forged = {"Mattermost-Plugin-ID": PLUGIN_ID}
        status, body, _ = await world.h.request(
            route.method, route.url, user=world.admin, json_body=route.body, headers=forged
        )
        assert status == 403, (route.url, status, body)


SEED = "/admin/mcp/vetted-tool-seed"


async def test_the_vetted_seed_of_the_embedded_server_lets_its_reading_tools_run_in_dms(world: World) -> None:
    status, body, _ = await world.h.request("GET", SEED + "?base_url=embedded://mattermost", user=world.admin)
    assert status == 200, body
    assert_matches_openapi("GET", SEED, 200, body)
    seed = {c["name"]: (c["policy"], c["enabled"]) for c in body["tool_configs"]}
    reading = ["read_post", "read_channel", "search_posts", "get_channel_info", "get_team_info", "search_users"]
    reading += ["get_channel_members", "get_team_members"]
    assert all(seed.get(name) == ("auto_run_in_dm", True) for name in reading), seed
    assert not {"create_post", "create_channel", "web_search"} & set(seed), seed  # writes and web tools ask


async def test_a_remote_server_has_no_vetted_seed_and_the_base_url_is_required(world: World) -> None:
    status, body, _ = await world.h.request("GET", SEED + "?base_url=https://mcp.x.io/mcp", user=world.admin)
    assert (status, body) == (200, {"tool_configs": []})
    status, body, _ = await world.h.request("GET", SEED, user=world.admin)
    assert status == 400 and "base_url" in body["error"], body
    assert_matches_openapi("GET", SEED, 400, body)
