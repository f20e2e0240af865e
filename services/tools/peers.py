"""Clients of the services the tools service asks: the registry (agents), the index (search) and
the mcp service (remote MCP tools).

Adapters from gRPC messages to the domain's protocols (``AgentDirectory``, ``SemanticSearch``);
the domain modules never see a stub or a status code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from google.protobuf import json_format, struct_pb2

from services.common import grpc_client, identity
from services.common.errors import DomainError, PermissionDenied, UpstreamUnavailable
from services.common.mattermost import MattermostClient
from services.tools.catalog import ToolFamily, ToolSpec
from services.tools.execution import AgentTools
from services.tools.mattermost_tools import SemanticHit
from services.tools.policies import AgentToolAccess, ToolContext, ToolPolicy, policy_from_tool_config
from services.tools.results import ToolResult

logger = logging.getLogger(__name__)


class RegistryAgents:
    """``AgentDirectory`` over Registry.GetAgent, CheckAgentAccess and GetUserToolPreferences."""

    def __init__(self, registry: registry_pb2_grpc.RegistryAsyncStub, mattermost: MattermostClient) -> None:
        self._registry = registry
        self._mm = mattermost

    async def agent_tools(self, context: ToolContext) -> AgentTools:
        """The agent's tool settings; NotFound / PermissionDenied as the registry decides."""
        reply = await grpc_client.unary(self._registry.GetAgent, registry_pb2.GetAgentRequest(id=context.agent_id))
        agent = reply.agent
        team_ids = [t.id for t in await self._mm.get_user_teams(context.user_id)]
        decision = await grpc_client.unary(
            self._registry.CheckAgentAccess,
            registry_pb2.CheckAgentAccessRequest(
                agent_id=agent.id,
                user_id=context.user_id,
                channel_id=context.channel_id,
                is_direct_message=context.is_direct_message,
                user_team_ids=team_ids,
            ),
        )
        if not decision.allowed:
            raise PermissionDenied(decision.reason or "the user may not use this agent")
        preferences = await grpc_client.unary(
            self._registry.GetUserToolPreferences,
            registry_pb2.GetUserToolPreferencesRequest(user_id=context.user_id),
        )
        return AgentTools(
            access=AgentToolAccess(
                disable_tools=agent.disable_tools,
                native_web_search="web_search" in agent.enabled_native_tools,
                auto_enable_all=agent.auto_enable_new_mcp_tools,
                selected=frozenset((r.server_origin, r.tool_name) for r in agent.enabled_mcp_tools),
                disabled_origins=frozenset(preferences.preferences.disabled_servers),
            ),
            bot_user_id=agent.bot_user_id,
        )


class IndexSemanticSearch:
    """``SemanticSearch`` over Index.Search; None while that RPC is unimplemented or failing."""

    def __init__(self, index: index_pb2_grpc.IndexAsyncStub) -> None:
        self._index = index

    async def search(
        self, query: str, *, user_id: str, team_id: str, channel_id: str, limit: int
    ) -> list[SemanticHit] | None:
        """Hits in the channels ``user_id`` can read, or None so the caller falls back to keyword
        search."""
        request = index_pb2.SearchRequest(
            query=query[:4000], user_id=user_id, team_id=team_id, channel_id=channel_id, limit=min(limit, 50)
        )
        try:
            # As the user: the index searches only the caller's own channels (the tools service
            # checked that it may act for this user); a caller acting for another user is refused.
            with _as_user(user_id):
                reply = await grpc_client.unary(self._index.Search, request)
        except DomainError as exc:
            # UNIMPLEMENTED until the index's search lands, or the index is down: keywords still work.
            logger.info("semantic search unavailable, using keyword search: %s", type(exc).__name__)
            return None
        return [SemanticHit(r.post_id, r.channel_id, r.score) for r in reply.results]


@contextlib.contextmanager
def _as_user(user_id: str) -> Iterator[None]:
    """Calls made inside run as ``user_id``: remote tools use that user's sessions and grants."""
    token = identity.current_identity.set(identity.Identity(user_id=user_id))
    try:
        yield
    finally:
        identity.current_identity.reset(token)


class McpRemoteTools:
    """``RemoteToolDirectory`` over MCP.ListUserTools and MCP.CallTool."""

    def __init__(self, mcp: mcp_pb2_grpc.MCPAsyncStub) -> None:
        self._mcp = mcp

    async def tools(self, user_id: str, origins: frozenset[str] | None) -> list[tuple[ToolSpec, ToolPolicy]]:
        """The enabled tools of the servers in ``origins``; none while the mcp service fails
        (the built-in tools still work)."""
        request = mcp_pb2.ListUserToolsRequest(
            only_listed_servers=origins is not None, server_origins=sorted(origins or ())
        )
        try:
            with _as_user(user_id):
                reply = await grpc_client.unary(self._mcp.ListUserTools, request)
        except DomainError as exc:
            logger.warning("remote MCP tools unavailable: %s", exc.message)
            return []
        return [
            (
                ToolSpec(
                    t.name,
                    t.description,
                    json_format.MessageToDict(t.input_schema),
                    ToolFamily.MCP,
                    server_origin=server.server_origin,
                ),
                policy_from_tool_config(t.name, t.policy, t.enabled),
            )
            for server in reply.servers
            for t in server.tools
            if t.enabled
        ]

    async def call(self, user_id: str, spec: ToolSpec, arguments: dict[str, Any]) -> ToolResult:
        """Run the tool on its server as the user; an unreachable server is the tool's error."""
        args = struct_pb2.Struct()
        args.update(arguments)
        request = mcp_pb2.CallToolRequest(server_origin=spec.server_origin, tool_name=spec.name, arguments=args)
        try:
            with _as_user(user_id):
                reply = await grpc_client.unary(self._mcp.CallTool, request)
        except UpstreamUnavailable as exc:
            return ToolResult(f"the MCP server could not run the tool: {exc.message}", is_error=True)
        return ToolResult(reply.content, is_error=reply.is_error)
