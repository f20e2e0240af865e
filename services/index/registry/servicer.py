"""agents.registry.v1.Registry: thin translation between messages and the registry domain."""

from __future__ import annotations

import grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.errors import InvalidInput
from services.common.identity import identity
from services.index.registry.messages import agent_to_message
from services.index.registry.service import Registry


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def ListUsableAgents(
        self, request: registry_pb2.ListUsableAgentsRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.ListUsableAgentsResponse:
        agents, default = await self.registry.usable_agents(identity(), request.channel_id, set(request.user_team_ids))
        return registry_pb2.ListUsableAgentsResponse(
            agents=[agent_to_message(a, include_instructions=False) for a in agents],
            default_agent_username=default,
        )

    async def GetAgent(
        self, request: registry_pb2.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.GetAgentResponse:
        selector = request.WhichOneof("selector")
        if selector is None:
            raise InvalidInput("one of id, username or bot_user_id is required", field="selector")
        agent = await self.registry.get_agent(**{selector: getattr(request, selector)})
        return registry_pb2.GetAgentResponse(agent=agent_to_message(agent))

    async def CheckAgentAccess(
        self, request: registry_pb2.CheckAgentAccessRequest, context: grpc.aio.ServicerContext
    ) -> registry_pb2.CheckAgentAccessResponse:
        if not request.agent_id or not request.user_id:
            raise InvalidInput(
                "agent_id and user_id are required", field="agent_id" if not request.agent_id else "user_id"
            )
        decision = await self.registry.check_access(
            request.agent_id,
            request.user_id,
            request.channel_id,
            is_direct_message=request.is_direct_message,
            user_team_ids=set(request.user_team_ids),
        )
        return registry_pb2.CheckAgentAccessResponse(allowed=decision.allowed, reason=decision.reason)
