"""agents.registry.v1.Registry: thin translation between messages and the registry domain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.errors import InvalidInput
from services.common.identity import identity
from services.index.registry import plugin_config
from services.index.registry.agent_registry import AgentRegistry
from services.index.registry.config_registry import ConfigRegistry
from services.index.registry.config_store import ConfigRevision
from services.index.registry.messages import (
    agent_from_message,
    agent_to_message,
    config_to_message,
    message_to_json,
    service_to_message,
    tools_from_messages,
    tools_to_messages,
)
from services.index.registry.prompts import CustomPrompt, PromptLibrary

Ctx = grpc.aio.ServicerContext


def _prompt(p: CustomPrompt) -> registry_pb2.CustomPrompt:
    return registry_pb2.CustomPrompt(
        id=p.id,
        creator_id=p.creator_id,
        name=p.name,
        description=p.description,
        template=p.template,
        is_shared=p.is_shared,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, config: ConfigRegistry, agents: AgentRegistry, prompts: PromptLibrary) -> None:
        self.config = config
        self.agents = agents
        self.prompts = prompts

    # ---- services ---------------------------------------------------------------------------

    async def ListServices(
        self, request: registry_pb2.ListServicesRequest, context: Ctx
    ) -> registry_pb2.ListServicesResponse:
        services = await self.config.list_services(identity())
        return registry_pb2.ListServicesResponse(services=[service_to_message(s) for s in services])

    async def GetService(
        self, request: registry_pb2.GetServiceRequest, context: Ctx
    ) -> registry_pb2.GetServiceResponse:
        service = await self.config.get_service(identity(), request.id)
        return registry_pb2.GetServiceResponse(service=service_to_message(service))

    async def GetServiceCredentials(
        self, request: registry_pb2.GetServiceCredentialsRequest, context: Ctx
    ) -> registry_pb2.GetServiceCredentialsResponse:
        service = await self.config.get_service(identity(), request.id, with_secrets=True)
        return registry_pb2.GetServiceCredentialsResponse(service=service_to_message(service))

    async def CreateService(
        self, request: registry_pb2.CreateServiceRequest, context: Ctx
    ) -> registry_pb2.CreateServiceResponse:
        service = await self.config.create_service(identity(), message_to_json(request.service))
        return registry_pb2.CreateServiceResponse(service=service_to_message(service))

    async def UpdateService(
        self, request: registry_pb2.UpdateServiceRequest, context: Ctx
    ) -> registry_pb2.UpdateServiceResponse:
        service = await self.config.update_service(identity(), message_to_json(request.service))
        return registry_pb2.UpdateServiceResponse(service=service_to_message(service))

    async def DeleteService(
        self, request: registry_pb2.DeleteServiceRequest, context: Ctx
    ) -> registry_pb2.DeleteServiceResponse:
        await self.config.delete_service(identity(), request.id)
        return registry_pb2.DeleteServiceResponse()

    # ---- plugin configuration ---------------------------------------------------------------

    async def GetPluginConfig(
        self, request: registry_pb2.GetPluginConfigRequest, context: Ctx
    ) -> registry_pb2.GetPluginConfigResponse:
        active = await self.config.get_config(identity())
        return registry_pb2.GetPluginConfigResponse(
            config=config_to_message(active.config), license=int(self.config.license), revision=active.revision
        )

    async def UpdatePluginConfig(
        self, request: registry_pb2.UpdatePluginConfigRequest, context: Ctx
    ) -> registry_pb2.UpdatePluginConfigResponse:
        revision = await self.config.update_config(identity(), message_to_json(request.config))
        return registry_pb2.UpdatePluginConfigResponse(revision=revision)

    async def WatchPluginConfig(
        self, request: registry_pb2.WatchPluginConfigRequest, context: Ctx
    ) -> AsyncIterator[registry_pb2.WatchPluginConfigResponse]:
        caller = identity()
        self.config.visible(caller, ConfigRevision("", {}, 0))  # refuse before streaming anything
        async for revision in self.config.feed.subscribe():
            shown = self.config.visible(caller, revision)
            yield registry_pb2.WatchPluginConfigResponse(
                config=config_to_message(shown.config), license=int(self.config.license), revision=shown.revision
            )

    # ---- agents -----------------------------------------------------------------------------

    async def ListAgents(
        self, request: registry_pb2.ListAgentsRequest, context: Ctx
    ) -> registry_pb2.ListAgentsResponse:
        visible, active = await self.agents.list_for(
            identity(), usable_by=request.usable_by_user_id, user_team_ids=frozenset(request.user_team_ids)
        )
        return registry_pb2.ListAgentsResponse(
            agents=[agent_to_message(a, include_instructions=manages) for a, manages in visible],
            active_count=active,
            license=int(self.config.license),
        )

    async def ListUsableAgents(
        self, request: registry_pb2.ListUsableAgentsRequest, context: Ctx
    ) -> registry_pb2.ListUsableAgentsResponse:
        caller = identity()
        # Both from memory kept current by NOTIFY: this is GET /ai_bots' path, called per page view.
        active = await self.config.live()
        default = str(active.config.get("defaultBotName", ""))
        usable = await self.agents.usable(caller.user_id, set(request.user_team_ids), request.channel_id, default)
        return registry_pb2.ListUsableAgentsResponse(
            agents=[agent_to_message(a, include_instructions=False) for a in usable],
            default_agent_username=default,
            search_enabled=plugin_config.search_enabled(active.config, self.config.license),
            allow_unsafe_links=bool(active.config.get("allowUnsafeLinks", False)),
        )

    async def GetAgent(self, request: registry_pb2.GetAgentRequest, context: Ctx) -> registry_pb2.GetAgentResponse:
        selector = request.WhichOneof("selector")
        # A selector set to "" selects nothing either.
        if selector is None or not getattr(request, selector):
            raise InvalidInput("one of id, username or bot_user_id is required", field="selector")
        agent, manages = await self.agents.get(identity(), **{selector: getattr(request, selector)})
        return registry_pb2.GetAgentResponse(agent=agent_to_message(agent), can_manage=manages)

    async def CreateAgent(
        self, request: registry_pb2.CreateAgentRequest, context: Ctx
    ) -> registry_pb2.CreateAgentResponse:
        agent = await self.agents.create(identity(), agent_from_message(request.agent), set(request.defaulted_fields))
        return registry_pb2.CreateAgentResponse(agent=agent_to_message(agent))

    async def UpdateAgent(
        self, request: registry_pb2.UpdateAgentRequest, context: Ctx
    ) -> registry_pb2.UpdateAgentResponse:
        if not request.agent.id:
            raise InvalidInput("agent id is required", field="id")
        agent, dropped = await self.agents.update(
            identity(),
            agent_from_message(request.agent),
            expected_update_at=request.expected_update_at,
            available_tools=tools_from_messages(request.available_mcp_tools),
        )
        return registry_pb2.UpdateAgentResponse(
            agent=agent_to_message(agent), dropped_mcp_tools=tools_to_messages(dropped)
        )

    async def DeleteAgent(
        self, request: registry_pb2.DeleteAgentRequest, context: Ctx
    ) -> registry_pb2.DeleteAgentResponse:
        await self.agents.delete(identity(), request.id)
        return registry_pb2.DeleteAgentResponse()

    async def SetAgentAvatar(
        self, request: registry_pb2.SetAgentAvatarRequest, context: Ctx
    ) -> registry_pb2.SetAgentAvatarResponse:
        agent = await self.agents.set_avatar(identity(), request.agent_id, request.image, request.filename)
        return registry_pb2.SetAgentAvatarResponse(agent=agent_to_message(agent))

    async def CheckAgentAccess(
        self, request: registry_pb2.CheckAgentAccessRequest, context: Ctx
    ) -> registry_pb2.CheckAgentAccessResponse:
        if not request.agent_id or not request.user_id:
            raise InvalidInput(
                "agent_id and user_id are required", field="agent_id" if not request.agent_id else "user_id"
            )
        decision = await self.agents.check_access(
            request.agent_id,
            request.user_id,
            request.channel_id,
            is_direct_message=request.is_direct_message,
            user_team_ids=set(request.user_team_ids),
        )
        return registry_pb2.CheckAgentAccessResponse(allowed=decision.allowed, reason=decision.reason)

    # ---- custom prompts ---------------------------------------------------------------------

    async def ListCustomPrompts(
        self, request: registry_pb2.ListCustomPromptsRequest, context: Ctx
    ) -> registry_pb2.ListCustomPromptsResponse:
        return registry_pb2.ListCustomPromptsResponse(prompts=[_prompt(p) for p in await self.prompts.list(identity())])

    async def GetCustomPrompt(
        self, request: registry_pb2.GetCustomPromptRequest, context: Ctx
    ) -> registry_pb2.GetCustomPromptResponse:
        return registry_pb2.GetCustomPromptResponse(prompt=_prompt(await self.prompts.get(identity(), request.id)))

    async def CreateCustomPrompt(
        self, request: registry_pb2.CreateCustomPromptRequest, context: Ctx
    ) -> registry_pb2.CreateCustomPromptResponse:
        prompt = await self.prompts.create(
            identity(), request.name, request.description, request.template, request.is_shared
        )
        return registry_pb2.CreateCustomPromptResponse(prompt=_prompt(prompt))

    async def UpdateCustomPrompt(
        self, request: registry_pb2.UpdateCustomPromptRequest, context: Ctx
    ) -> registry_pb2.UpdateCustomPromptResponse:
        prompt = await self.prompts.update(
            identity(), request.id, request.name, request.description, request.template, request.is_shared
        )
        return registry_pb2.UpdateCustomPromptResponse(prompt=_prompt(prompt))

    async def DeleteCustomPrompt(
        self, request: registry_pb2.DeleteCustomPromptRequest, context: Ctx
    ) -> registry_pb2.DeleteCustomPromptResponse:
        await self.prompts.delete(identity(), request.id)
        return registry_pb2.DeleteCustomPromptResponse()

    async def ListPinnedPrompts(
        self, request: registry_pb2.ListPinnedPromptsRequest, context: Ctx
    ) -> registry_pb2.ListPinnedPromptsResponse:
        return registry_pb2.ListPinnedPromptsResponse(prompt_ids=await self.prompts.pinned(identity()))

    async def SetPromptPin(
        self, request: registry_pb2.SetPromptPinRequest, context: Ctx
    ) -> registry_pb2.SetPromptPinResponse:
        await self.prompts.set_pin(identity(), request.prompt_id, request.pinned)
        return registry_pb2.SetPromptPinResponse()
