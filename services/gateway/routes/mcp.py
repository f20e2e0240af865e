"""MCP routes (plugin-api.md 1.2-1.5): the user's MCP tools and OAuth connections, the admin's
server status and tool cache, each a call to ``agents.mcp.v1.MCP``, and the vetted tool seed
(``agents.tools.v1.Tools``, which owns tool policies).

The user's tool preferences live in the registry (per-user data, like prompt pins). Routes the
MCP API has no call for yet (servers other plugins register) are served behind
the plugin's guards and answer 501 from here. The Mattermost MCP server's routes are in
``mcp_server``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents.common.v1 import common_pb2 as common_pb2
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.tools.v1 import tools_pb2 as tools_pb2
from aiohttp import web
from google.protobuf import json_format

from services.common.errors import DomainError, InvalidInput, PermissionDenied, Unimplemented
from services.common.grpc_client import unary
from services.gateway.bridge.auth import authenticate_bridge_caller
from services.gateway.deps import DEPS
from services.gateway.middleware import read_json, require_empty_body
from services.gateway.routes.guards import require_admin

routes = web.RouteTableDef()
logger = logging.getLogger(__name__)

NOT_AVAILABLE = "this MCP feature is not available yet"
# What the OAuth popup shows once the grant is stored: the plugin's page closes itself.
CLOSE_WINDOW_PAGE = "<!DOCTYPE html><html><body><script>window.close();</script></body></html>"


@routes.get("/mcp/tools")
async def user_tools(request: web.Request) -> web.Response:
    """The caller's MCP servers with their tools and OAuth state."""
    reply = await unary(request.app[DEPS].backends.mcp.ListUserTools, mcp_pb2.ListUserToolsRequest())
    return web.json_response({"servers": [_user_server(s) for s in reply.servers]})


def _user_server(server: mcp_pb2.UserServerTools) -> dict[str, Any]:
    return {
        "name": server.name,
        "serverOrigin": server.server_origin,
        "authenticated": server.authenticated,
        "needsOAuth": server.needs_oauth,
        "authEmail": server.auth_email,
        "authURL": server.auth_url,
        "tools": [
            {"name": t.name, "description": t.description, "enabled": t.enabled, "policy": t.policy}
            for t in server.tools
        ],
    }


def _remote(origin: str) -> bool:
    # Remote servers are named by their URL; embedded and plugin servers by their own schemes.
    return origin.lower().startswith(("https://", "http://"))


async def available_mcp_tools(request: web.Request, selected: Sequence[common_pb2.ToolRef]) -> list[common_pb2.ToolRef]:
    """What an agent's selection is checked against when it is saved (the registry drops the rest).

    Only the selected remote servers are asked, as the saving user. A selection the listing cannot
    judge stays: tools of embedded or plugin servers, and of a server that did not answer or needs
    OAuth. Empty means "do not check" (no remote server selected, or the mcp service is down).
    """
    origins = sorted({t.server_origin for t in selected if _remote(t.server_origin)})
    if not origins:
        return []
    listing = mcp_pb2.ListUserToolsRequest(only_listed_servers=True, server_origins=origins)
    try:
        reply = await unary(request.app[DEPS].backends.mcp.ListUserTools, listing)
    except DomainError as exc:
        logger.warning("MCP tools not checked on save: %s", exc.message)
        return []
    unsure = {s.server_origin for s in reply.servers if s.error or s.needs_oauth}
    listed = [
        common_pb2.ToolRef(server_origin=s.server_origin, tool_name=t.name)
        for s in reply.servers
        if s.server_origin not in unsure
        for t in s.tools
    ]
    return listed + [t for t in selected if not _remote(t.server_origin) or t.server_origin in unsure]


@routes.get("/mcp/oauth/{serverName}/start")
async def start_oauth(request: web.Request) -> web.Response:
    """Redirect the caller to the server's OAuth authorization page."""
    start = mcp_pb2.StartOAuthRequest(
        server_name=request.match_info["serverName"], resource_metadata=request.query.get("resource_metadata", "")
    )
    reply = await unary(request.app[DEPS].backends.mcp.StartOAuth, start)
    raise web.HTTPFound(reply.authorization_url)


@routes.delete("/mcp/oauth/{serverName}")
async def disconnect_oauth(request: web.Request) -> web.Response:
    """Forget the caller's OAuth grant for a server."""
    disconnect = mcp_pb2.DisconnectOAuthRequest(server_name=request.match_info["serverName"])
    await unary(request.app[DEPS].backends.mcp.DisconnectOAuth, disconnect)
    return web.Response(status=200)


@routes.get("/oauth/callback")
async def oauth_callback(request: web.Request) -> web.Response:
    """Store the grant an OAuth provider redirected back with; the page closes its window."""
    query = request.query
    complete = mcp_pb2.CompleteOAuthRequest(
        state=query.get("state", ""),
        code=query.get("code", ""),
        error=query.get("error", ""),
        error_description=query.get("error_description", ""),
    )
    await unary(request.app[DEPS].backends.mcp.CompleteOAuth, complete)
    return web.Response(text=CLOSE_WINDOW_PAGE, content_type="text/html")


@routes.get("/admin/mcp/tools")
async def server_status(request: web.Request) -> web.Response:
    """Every MCP server's tools, OAuth need and error, for admins."""
    require_admin(request)
    reply = await unary(request.app[DEPS].backends.mcp.GetServerStatus, mcp_pb2.GetServerStatusRequest())
    return web.json_response({"servers": [_server_status(s) for s in reply.servers]})


def _server_status(server: mcp_pb2.ServerStatus) -> dict[str, Any]:
    return {
        "name": server.name,
        "url": server.url,
        "tools": [
            {"name": t.name, "description": t.description, "inputSchema": json_format.MessageToDict(t.input_schema)}
            for t in server.tools
        ],
        "needsOAuth": server.needs_oauth,
        "oauthURL": server.oauth_url,
        "error": server.error,
        "serverType": server.server_type,
        "enabled": server.enabled,
        "expose_external": server.expose_external,
    }


@routes.post("/admin/mcp/tools/cache/clear")
async def clear_tool_cache(request: web.Request) -> web.Response:
    """Drop the cached tool lists of every MCP server, for admins."""
    require_admin(request)
    await require_empty_body(request)
    reply = await unary(request.app[DEPS].backends.mcp.ClearToolCache, mcp_pb2.ClearToolCacheRequest())
    message = f"cleared the tool cache of {reply.cleared_servers} MCP servers"
    return web.json_response({"cleared_servers": reply.cleared_servers, "message": message})


# Largest PUT /mcp/user-preferences body, as in the plugin.
MAX_PREFERENCES_BYTES = 256 * 1024


@routes.get("/mcp/user-preferences")
async def get_user_preferences(request: web.Request) -> web.Response:
    """The MCP servers the caller turned off in the RHS tools popover."""
    reply = await unary(
        request.app[DEPS].backends.registry.GetUserToolPreferences, registry_pb2.GetUserToolPreferencesRequest()
    )
    return web.json_response({"disabled_servers": list(reply.preferences.disabled_servers)})


@routes.put("/mcp/user-preferences")
async def put_user_preferences(request: web.Request) -> web.Response:
    """Replace the caller's turned-off MCP servers; answers them as stored (normalised)."""
    payload = await read_json(request, max_bytes=MAX_PREFERENCES_BYTES)
    if not isinstance(payload, dict):
        raise InvalidInput("the request body must be a JSON object", field="body")
    servers = payload.get("disabled_servers") or []  # absent or null: nothing turned off, as in Go
    if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
        raise InvalidInput("disabled_servers must be a list of server origins", field="disabled_servers")
    preferences = registry_pb2.UserToolPreferences(disabled_servers=servers)
    reply = await unary(
        request.app[DEPS].backends.registry.SetUserToolPreferences,
        registry_pb2.SetUserToolPreferencesRequest(preferences=preferences),
    )
    return web.json_response({"disabled_servers": list(reply.preferences.disabled_servers)})


# The plugin's name for its embedded Mattermost MCP server (the agent's MCP tab uses it too).
EMBEDDED_SERVER_ORIGIN = "embedded://mattermost"
# The plugin's ``tool_configs[].policy`` strings by approval and auto-run scope (unset scope is DM).
_TOOL_CONFIG_POLICIES = {
    (tools_pb2.APPROVAL_POLICY_AUTO, tools_pb2.AUTO_RUN_SCOPE_UNSPECIFIED): "auto_run_in_dm",
    (tools_pb2.APPROVAL_POLICY_AUTO, tools_pb2.AUTO_RUN_SCOPE_EVERYWHERE): "auto_run_everywhere",
    (tools_pb2.APPROVAL_POLICY_AUTO, tools_pb2.AUTO_RUN_SCOPE_DM): "auto_run_in_dm",
}


@routes.get("/admin/mcp/vetted-tool-seed")
async def vetted_tool_seed(request: web.Request) -> web.Response:
    """The tool defaults vetted for a server, for admins adding it.

    The embedded Mattermost server's seed comes from the tools service (its reading tools run
    without asking in DMs). The plugin also ships curated lists for a few public servers; we have no
    list for any remote server, so each answers none and its tools ask before they run.
    """
    require_admin(request)
    base_url = request.query.get("base_url", "").strip()
    if not base_url:
        raise InvalidInput("base_url is required", field="base_url")
    if base_url.rstrip("/").lower() != EMBEDDED_SERVER_ORIGIN:
        return web.json_response({"tool_configs": []})
    reply = await unary(request.app[DEPS].backends.tools.ListPolicies, tools_pb2.ListPoliciesRequest(vetted_seed=True))
    return web.json_response({"tool_configs": [_tool_config(p) for p in reply.policies]})


def _tool_config(policy: tools_pb2.ToolPolicy) -> dict[str, Any]:
    usable = policy.enabled and policy.approval != tools_pb2.APPROVAL_POLICY_DISABLED
    mode = _TOOL_CONFIG_POLICIES.get((policy.approval, policy.auto_run_scope), "ask")
    return {"name": policy.tool_name, "policy": mode, "enabled": usable}


# ---- routes the MCP API has no call for yet ----------------------------------------------------


@routes.put("/admin/mcp/plugin-servers/{pluginID}")
async def admin_feature_not_available(request: web.Request) -> web.Response:
    """501, after the admin check, for the admin MCP routes the MCP API has no call for yet."""
    require_admin(request)
    raise Unimplemented(NOT_AVAILABLE)


@routes.post("/bridge/v1/mcp/register")
@routes.post("/bridge/v1/mcp/unregister")
async def bridge_feature_not_available(request: web.Request) -> web.Response:
    """501, for proven plugins only, for registering MCP servers through the bridge."""
    caller = await authenticate_bridge_caller(request)
    if caller.user_id:
        # Registering a server changes what every agent may call: only a proven plugin may.
        raise PermissionDenied("only a plugin may register MCP servers; a user's own credentials cannot")
    raise Unimplemented(NOT_AVAILABLE)
