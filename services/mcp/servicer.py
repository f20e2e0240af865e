"""agents.mcp.v1.MCP: thin translation between messages and ``RemoteTools`` and ``OAuthFlow``.

RPCs of features not built yet (server CRUD) keep the generated base's UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from google.protobuf import json_format, struct_pb2

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.identity import identity
from services.mcp.config import REMOTE
from services.mcp.oauth import OAuthFlow
from services.mcp.remote import RemoteTool, RemoteTools, ServerTools


def _user_id() -> str:
    user_id = identity().user_id
    if not user_id:
        # Remote tools run as a user (their grants, their session): there is none for the system.
        raise Unauthenticated("remote MCP tools are used as a user; the call names none")
    return user_id


def _struct(value: dict[str, Any] | None) -> struct_pb2.Struct | None:
    if value is None:
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _tool_to_pb(tool: RemoteTool) -> mcp_pb2.McpTool:
    return mcp_pb2.McpTool(
        name=tool.name,
        description=tool.description,
        input_schema=_struct(tool.input_schema),
        enabled=tool.enabled,
        policy=tool.policy,
    )


def _user_server_to_pb(found: ServerTools, oauth: OAuthFlow, authenticated: bool) -> mcp_pb2.UserServerTools:
    return mcp_pb2.UserServerTools(
        name=found.server.name,
        server_origin=found.server.origin,
        authenticated=authenticated,
        needs_oauth=found.needs_oauth,
        auth_url=oauth.start_url(found.server) if found.needs_oauth else "",
        tools=[_tool_to_pb(t) for t in found.tools],
        error=found.error,
    )


def _status_to_pb(found: ServerTools, oauth: OAuthFlow) -> mcp_pb2.ServerStatus:
    return mcp_pb2.ServerStatus(
        name=found.server.name,
        url=found.server.base_url,
        tools=[_tool_to_pb(t) for t in found.tools],
        needs_oauth=found.needs_oauth,
        oauth_url=oauth.start_url(found.server) if found.needs_oauth else "",
        error=found.error,
        server_type=REMOTE,
        enabled=found.server.enabled,
        expose_external=found.server.expose_external,
    )


class McpServicer(mcp_pb2_grpc.MCPServicer):
    """The remote-server and OAuth RPCs of agents.mcp.v1.MCP."""

    def __init__(self, remote: RemoteTools, oauth: OAuthFlow) -> None:
        self.remote = remote
        self.oauth = oauth

    async def ListUserTools(
        self,
        request: mcp_pb2.ListUserToolsRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.ListUserToolsRequest, mcp_pb2.ListUserToolsResponse],
    ) -> mcp_pb2.ListUserToolsResponse:
        """The enabled servers' tools for the calling user."""
        only = frozenset(request.server_origins) if request.only_listed_servers else None
        user_id = _user_id()
        found = await self.remote.user_tools(user_id, frozenset(request.disabled_servers), only)
        connected = await asyncio.gather(*(self.oauth.connected(user_id, s.server) for s in found))
        return mcp_pb2.ListUserToolsResponse(
            servers=[_user_server_to_pb(s, self.oauth, c) for s, c in zip(found, connected, strict=True)]
        )

    async def CallTool(
        self,
        request: mcp_pb2.CallToolRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.CallToolRequest, mcp_pb2.CallToolResponse],
    ) -> mcp_pb2.CallToolResponse:
        """Calls a tool as the calling user."""
        arguments = json_format.MessageToDict(request.arguments) if request.HasField("arguments") else {}
        outcome = await self.remote.call_tool(_user_id(), request.server_origin, request.tool_name, arguments)
        return mcp_pb2.CallToolResponse(
            content=outcome.content, is_error=outcome.is_error, structured_content=_struct(outcome.structured)
        )

    async def StartOAuth(
        self,
        request: mcp_pb2.StartOAuthRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.StartOAuthRequest, mcp_pb2.StartOAuthResponse],
    ) -> mcp_pb2.StartOAuthResponse:
        """Starts the calling user's authorization with a server."""
        url = await self.oauth.start(_user_id(), request.server_name, request.resource_metadata)
        return mcp_pb2.StartOAuthResponse(authorization_url=url)

    async def CompleteOAuth(
        self,
        request: mcp_pb2.CompleteOAuthRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.CompleteOAuthRequest, mcp_pb2.CompleteOAuthResponse],
    ) -> mcp_pb2.CompleteOAuthResponse:
        """Stores the calling user's grant from the callback's state and code."""
        user_id = _user_id()
        server = await self.oauth.complete(user_id, request.state, request.code, request.error)
        self.remote.reset(user_id, server.name)
        return mcp_pb2.CompleteOAuthResponse(server_name=server.name, server_origin=server.origin)

    async def DisconnectOAuth(
        self,
        request: mcp_pb2.DisconnectOAuthRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.DisconnectOAuthRequest, mcp_pb2.DisconnectOAuthResponse],
    ) -> mcp_pb2.DisconnectOAuthResponse:
        """Forgets (and revokes) the calling user's grant for a server."""
        user_id = _user_id()
        server = await self.oauth.disconnect(user_id, request.server_name)
        self.remote.reset(user_id, request.server_name)
        return mcp_pb2.DisconnectOAuthResponse(server_origin=server.origin if server is not None else "")

    async def GetServerStatus(
        self,
        request: mcp_pb2.GetServerStatusRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.GetServerStatusRequest, mcp_pb2.GetServerStatusResponse],
    ) -> mcp_pb2.GetServerStatusResponse:
        """Every server's live status (system admins)."""
        _require_admin()
        found = await self.remote.server_status(_user_id())
        return mcp_pb2.GetServerStatusResponse(servers=[_status_to_pb(s, self.oauth) for s in found])

    async def ClearToolCache(
        self,
        request: mcp_pb2.ClearToolCacheRequest,
        context: grpc.aio.ServicerContext[mcp_pb2.ClearToolCacheRequest, mcp_pb2.ClearToolCacheResponse],
    ) -> mcp_pb2.ClearToolCacheResponse:
        """Drops the listed tools (system admins)."""
        _require_admin()
        return mcp_pb2.ClearToolCacheResponse(cleared_servers=self.remote.clear_cache())


def _require_admin() -> None:
    if not identity().is_system_admin:
        raise PermissionDenied("only system admins can see and clear the MCP servers' state")
