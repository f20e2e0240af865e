"""Clients of the services the tools service asks: the registry (agents) and the index (search).

Adapters from gRPC messages to the domain's protocols (``AgentDirectory``, ``SemanticSearch``);
the domain modules never see a stub or a status code.
"""

from __future__ import annotations

import logging

from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common import grpc_client
from services.common.errors import DomainError, PermissionDenied
from services.common.mattermost import MattermostClient
from services.tools.execution import AgentTools
from services.tools.mattermost_tools import SemanticHit
from services.tools.policies import AgentToolAccess, ToolContext

logger = logging.getLogger(__name__)


class RegistryAgents:
    """``AgentDirectory`` over Registry.GetAgent and Registry.CheckAgentAccess."""

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
        return AgentTools(
            access=AgentToolAccess(
                disable_tools=agent.disable_tools,
                native_web_search="web_search" in agent.enabled_native_tools,
                auto_enable_all=agent.auto_enable_new_mcp_tools,
                selected=frozenset((r.server_origin, r.tool_name) for r in agent.enabled_mcp_tools),
            ),
            bot_user_id=agent.bot_user_id,
        )


class IndexSemanticSearch:
    """``SemanticSearch`` over Index.Search; None while that RPC is unimplemented or failing."""

    def __init__(self, index: index_pb2_grpc.IndexAsyncStub) -> None:
        self._index = index

    async def search(
        self, query: str, *, team_id: str, channel_id: str, limit: int, readable_channel_ids: list[str]
    ) -> list[SemanticHit] | None:
        """Hits in the given channels, or None so the caller falls back to keyword search."""
        request = index_pb2.SearchRequest(
            query=query[:4000],
            team_id=team_id,
            channel_id=channel_id,
            limit=min(limit, 50),
            readable_channel_ids=readable_channel_ids,
        )
        try:
            reply = await grpc_client.unary(self._index.Search, request)
        except DomainError as exc:
            # UNIMPLEMENTED until the index's search lands, or the index is down: keywords still work.
            logger.info("semantic search unavailable, using keyword search: %s", type(exc).__name__)
            return None
        return [SemanticHit(r.post_id, r.channel_id, r.score) for r in reply.results]
