"""agents.registry.v1.Registry: thin translation between messages and the registry domain."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

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
from services.index.registry.user_preferences import UserToolPreferences


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
    """Every RPC of agents.registry.v1.Registry."""

    def __init__(
        self,
        config: ConfigRegistry,
        agents: AgentRegistry,
        prompts: PromptLibrary,
        search_ready: Callable[[], Awaitable[bool]],
        tool_preferences: UserToolPreferences,
    ) -> None:
        self.config = config
        self.agents = agents
        self.prompts = prompts
        # Whether the index answers searches now: configured search is not working search (a
        # misconfigured provider, a model changed since the last reindex).
        self.search_ready = search_ready
        self.tool_preferences = tool_preferences

    # ---- services ---------------------------------------------------------------------------

    async def ListServices(
        self,
        request: registry_pb2.ListServicesRequest,
        context: grpc.aio.ServicerContext[registry_pb2.ListServicesRequest, registry_pb2.ListServicesResponse],
    ) -> registry_pb2.ListServicesResponse:
        """LLM services with their secrets masked."""
        services = await self.config.list_services(identity())
        return registry_pb2.ListServicesResponse(services=[service_to_message(s) for s in services])

    async def GetService(
        self,
        request: registry_pb2.GetServiceRequest,
        context: grpc.aio.ServicerContext[registry_pb2.GetServiceRequest, registry_pb2.GetServiceResponse],
    ) -> registry_pb2.GetServiceResponse:
        """One LLM service, secrets masked."""
        service = await self.config.get_service(identity(), request.id)
        return registry_pb2.GetServiceResponse(service=service_to_message(service))

    async def GetServiceCredentials(
        self,
        request: registry_pb2.GetServiceCredentialsRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.GetServiceCredentialsRequest, registry_pb2.GetServiceCredentialsResponse
        ],
    ) -> registry_pb2.GetServiceCredentialsResponse:
        """One LLM service with its secrets, for internal services."""
        service = await self.config.get_service(identity(), request.id, with_secrets=True)
        return registry_pb2.GetServiceCredentialsResponse(service=service_to_message(service))

    async def CreateService(
        self,
        request: registry_pb2.CreateServiceRequest,
        context: grpc.aio.ServicerContext[registry_pb2.CreateServiceRequest, registry_pb2.CreateServiceResponse],
    ) -> registry_pb2.CreateServiceResponse:
        """Adds an LLM service to the plugin configuration."""
        service = await self.config.create_service(identity(), message_to_json(request.service))
        return registry_pb2.CreateServiceResponse(service=service_to_message(service))

    async def UpdateService(
        self,
        request: registry_pb2.UpdateServiceRequest,
        context: grpc.aio.ServicerContext[registry_pb2.UpdateServiceRequest, registry_pb2.UpdateServiceResponse],
    ) -> registry_pb2.UpdateServiceResponse:
        """Replaces an LLM service, keeping masked secrets while its endpoint is unchanged."""
        service = await self.config.update_service(identity(), message_to_json(request.service))
        return registry_pb2.UpdateServiceResponse(service=service_to_message(service))

    async def DeleteService(
        self,
        request: registry_pb2.DeleteServiceRequest,
        context: grpc.aio.ServicerContext[registry_pb2.DeleteServiceRequest, registry_pb2.DeleteServiceResponse],
    ) -> registry_pb2.DeleteServiceResponse:
        """Removes an LLM service no agent uses."""
        await self.config.delete_service(identity(), request.id)
        return registry_pb2.DeleteServiceResponse()

    # ---- plugin configuration ---------------------------------------------------------------

    async def GetPluginConfig(
        self,
        request: registry_pb2.GetPluginConfigRequest,
        context: grpc.aio.ServicerContext[registry_pb2.GetPluginConfigRequest, registry_pb2.GetPluginConfigResponse],
    ) -> registry_pb2.GetPluginConfigResponse:
        """The active plugin configuration, its revision and the cluster's license."""
        active = await self.config.get_config(identity())
        return registry_pb2.GetPluginConfigResponse(
            config=config_to_message(active.config),
            license=registry_pb2.License.ValueType(self.config.license),
            revision=active.revision,
        )

    async def UpdatePluginConfig(
        self,
        request: registry_pb2.UpdatePluginConfigRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.UpdatePluginConfigRequest, registry_pb2.UpdatePluginConfigResponse
        ],
    ) -> registry_pb2.UpdatePluginConfigResponse:
        """Saves a new plugin configuration revision."""
        revision = await self.config.update_config(identity(), message_to_json(request.config))
        return registry_pb2.UpdatePluginConfigResponse(revision=revision)

    async def WatchPluginConfig(
        self,
        request: registry_pb2.WatchPluginConfigRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.WatchPluginConfigRequest, registry_pb2.WatchPluginConfigResponse
        ],
    ) -> AsyncIterator[registry_pb2.WatchPluginConfigResponse]:
        """The active configuration, then every new revision or license."""
        caller = identity()
        self.config.visible(caller, ConfigRevision("", {}, 0))  # refuse before streaming anything
        async for revision, license in self.config.feed.subscribe():
            shown = self.config.visible(caller, revision)
            yield registry_pb2.WatchPluginConfigResponse(
                config=config_to_message(shown.config),
                license=registry_pb2.License.ValueType(license),
                revision=shown.revision,
            )

    # ---- agents -----------------------------------------------------------------------------

    async def ListAgents(
        self,
        request: registry_pb2.ListAgentsRequest,
        context: grpc.aio.ServicerContext[registry_pb2.ListAgentsRequest, registry_pb2.ListAgentsResponse],
    ) -> registry_pb2.ListAgentsResponse:
        """Agents the caller may see, with the active count and the license."""
        visible, active = await self.agents.list_for(
            identity(), usable_by=request.usable_by_user_id, user_team_ids=frozenset(request.user_team_ids)
        )
        return registry_pb2.ListAgentsResponse(
            agents=[agent_to_message(a, include_instructions=manages) for a, manages in visible],
            active_count=active,
            license=registry_pb2.License.ValueType(self.config.license),
        )

    async def ListUsableAgents(
        self,
        request: registry_pb2.ListUsableAgentsRequest,
        context: grpc.aio.ServicerContext[registry_pb2.ListUsableAgentsRequest, registry_pb2.ListUsableAgentsResponse],
    ) -> registry_pb2.ListUsableAgentsResponse:
        """Agents the caller may use in a channel, the default agent first."""
        caller = identity()
        # Both from memory kept current by NOTIFY: this is GET /ai_bots' path, called per page view.
        active = await self.config.live()
        default = str(active.config.get("defaultBotName", ""))
        usable = await self.agents.usable(caller.user_id, set(request.user_team_ids), request.channel_id, default)
        return registry_pb2.ListUsableAgentsResponse(
            agents=[agent_to_message(a, include_instructions=False) for a in usable],
            default_agent_username=default,
            search_enabled=plugin_config.search_enabled(active.config, self.config.license)
            and await self.search_ready(),
            allow_unsafe_links=bool(active.config.get("allowUnsafeLinks", False)),
        )

    async def GetAgent(
        self,
        request: registry_pb2.GetAgentRequest,
        context: grpc.aio.ServicerContext[registry_pb2.GetAgentRequest, registry_pb2.GetAgentResponse],
    ) -> registry_pb2.GetAgentResponse:
        """One agent by id, username or bot user id, and whether the caller manages it."""
        selector = request.WhichOneof("selector")
        # A selector set to "" selects nothing either.
        if selector is None or not getattr(request, selector):
            raise InvalidInput("one of id, username or bot_user_id is required", field="selector")
        agent, manages = await self.agents.get(identity(), **{selector: getattr(request, selector)})
        return registry_pb2.GetAgentResponse(agent=agent_to_message(agent), can_manage=manages)

    async def CreateAgent(
        self,
        request: registry_pb2.CreateAgentRequest,
        context: grpc.aio.ServicerContext[registry_pb2.CreateAgentRequest, registry_pb2.CreateAgentResponse],
    ) -> registry_pb2.CreateAgentResponse:
        """Creates an agent and its bot account."""
        agent = await self.agents.create(identity(), agent_from_message(request.agent), set(request.defaulted_fields))
        return registry_pb2.CreateAgentResponse(agent=agent_to_message(agent))

    async def UpdateAgent(
        self,
        request: registry_pb2.UpdateAgentRequest,
        context: grpc.aio.ServicerContext[registry_pb2.UpdateAgentRequest, registry_pb2.UpdateAgentResponse],
    ) -> registry_pb2.UpdateAgentResponse:
        """Replaces an agent's mutable fields."""
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
        self,
        request: registry_pb2.DeleteAgentRequest,
        context: grpc.aio.ServicerContext[registry_pb2.DeleteAgentRequest, registry_pb2.DeleteAgentResponse],
    ) -> registry_pb2.DeleteAgentResponse:
        """Soft-deletes an agent and deactivates its bot."""
        await self.agents.delete(identity(), request.id)
        return registry_pb2.DeleteAgentResponse()

    async def SetAgentAvatar(
        self,
        request: registry_pb2.SetAgentAvatarRequest,
        context: grpc.aio.ServicerContext[registry_pb2.SetAgentAvatarRequest, registry_pb2.SetAgentAvatarResponse],
    ) -> registry_pb2.SetAgentAvatarResponse:
        """Sets the profile image of an agent's bot."""
        agent = await self.agents.set_avatar(identity(), request.agent_id, request.image, request.filename)
        return registry_pb2.SetAgentAvatarResponse(agent=agent_to_message(agent))

    async def CheckAgentAccess(
        self,
        request: registry_pb2.CheckAgentAccessRequest,
        context: grpc.aio.ServicerContext[registry_pb2.CheckAgentAccessRequest, registry_pb2.CheckAgentAccessResponse],
    ) -> registry_pb2.CheckAgentAccessResponse:
        """Whether a user may use an agent in a channel, and why not."""
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
        self,
        request: registry_pb2.ListCustomPromptsRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.ListCustomPromptsRequest, registry_pb2.ListCustomPromptsResponse
        ],
    ) -> registry_pb2.ListCustomPromptsResponse:
        """The caller's custom prompts plus shared ones."""
        return registry_pb2.ListCustomPromptsResponse(
            prompts=[_prompt(p) for p in await self.prompts.visible(identity())]
        )

    async def GetCustomPrompt(
        self,
        request: registry_pb2.GetCustomPromptRequest,
        context: grpc.aio.ServicerContext[registry_pb2.GetCustomPromptRequest, registry_pb2.GetCustomPromptResponse],
    ) -> registry_pb2.GetCustomPromptResponse:
        """One prompt the caller owns or that is shared."""
        return registry_pb2.GetCustomPromptResponse(prompt=_prompt(await self.prompts.get(identity(), request.id)))

    async def CreateCustomPrompt(
        self,
        request: registry_pb2.CreateCustomPromptRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.CreateCustomPromptRequest, registry_pb2.CreateCustomPromptResponse
        ],
    ) -> registry_pb2.CreateCustomPromptResponse:
        """Creates a prompt owned by the caller."""
        prompt = await self.prompts.create(
            identity(), request.name, request.description, request.template, request.is_shared
        )
        return registry_pb2.CreateCustomPromptResponse(prompt=_prompt(prompt))

    async def UpdateCustomPrompt(
        self,
        request: registry_pb2.UpdateCustomPromptRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.UpdateCustomPromptRequest, registry_pb2.UpdateCustomPromptResponse
        ],
    ) -> registry_pb2.UpdateCustomPromptResponse:
        """Replaces a prompt the caller created."""
        prompt = await self.prompts.update(
            identity(), request.id, request.name, request.description, request.template, request.is_shared
        )
        return registry_pb2.UpdateCustomPromptResponse(prompt=_prompt(prompt))

    async def DeleteCustomPrompt(
        self,
        request: registry_pb2.DeleteCustomPromptRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.DeleteCustomPromptRequest, registry_pb2.DeleteCustomPromptResponse
        ],
    ) -> registry_pb2.DeleteCustomPromptResponse:
        """Soft-deletes a prompt the caller created."""
        await self.prompts.delete(identity(), request.id)
        return registry_pb2.DeleteCustomPromptResponse()

    async def ListPinnedPrompts(
        self,
        request: registry_pb2.ListPinnedPromptsRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.ListPinnedPromptsRequest, registry_pb2.ListPinnedPromptsResponse
        ],
    ) -> registry_pb2.ListPinnedPromptsResponse:
        """Ids of the prompts the caller pinned and can still see."""
        return registry_pb2.ListPinnedPromptsResponse(prompt_ids=await self.prompts.pinned(identity()))

    async def SetPromptPin(
        self,
        request: registry_pb2.SetPromptPinRequest,
        context: grpc.aio.ServicerContext[registry_pb2.SetPromptPinRequest, registry_pb2.SetPromptPinResponse],
    ) -> registry_pb2.SetPromptPinResponse:
        """Pins or unpins a prompt for the caller."""
        await self.prompts.set_pin(identity(), request.prompt_id, request.pinned)
        return registry_pb2.SetPromptPinResponse()

    # ---- user tool preferences --------------------------------------------------------------

    async def GetUserToolPreferences(
        self,
        request: registry_pb2.GetUserToolPreferencesRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.GetUserToolPreferencesRequest, registry_pb2.GetUserToolPreferencesResponse
        ],
    ) -> registry_pb2.GetUserToolPreferencesResponse:
        """The MCP servers a user turned off."""
        disabled = await self.tool_preferences.disabled_servers(identity(), request.user_id)
        return registry_pb2.GetUserToolPreferencesResponse(
            preferences=registry_pb2.UserToolPreferences(disabled_servers=disabled)
        )

    async def SetUserToolPreferences(
        self,
        request: registry_pb2.SetUserToolPreferencesRequest,
        context: grpc.aio.ServicerContext[
            registry_pb2.SetUserToolPreferencesRequest, registry_pb2.SetUserToolPreferencesResponse
        ],
    ) -> registry_pb2.SetUserToolPreferencesResponse:
        """Replaces the MCP servers the caller turned off."""
        disabled = await self.tool_preferences.set_disabled_servers(
            identity(), list(request.preferences.disabled_servers)
        )
        return registry_pb2.SetUserToolPreferencesResponse(
            preferences=registry_pb2.UserToolPreferences(disabled_servers=disabled)
        )
