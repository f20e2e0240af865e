"""The registry as turns ask it: the agent's profile, whether the user may use it here, and the
plugin config's channel switches. gRPC stays in this module; turns see plain data and domain
errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.errors import DomainError, PermissionDenied
from services.common.grpc_client import unary
from services.common.mattermost.attachments import AGENT_MAX_FILE_BYTES
from services.common.plugin_config import PluginConfigWatcher
from services.llm.conversations.model import RequestContext

logger = logging.getLogger(__name__)

# How long a turn waits for the registry's first config revision right after start-up.
CONFIG_WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class AgentProfile:
    """What a turn needs to know about an agent."""

    id: str
    username: str
    display_name: str
    bot_user_id: str
    service_id: str
    model: str
    custom_instructions: str
    enable_vision: bool
    disable_tools: bool
    native_web_search: bool
    reasoning_enabled: bool
    reasoning_effort: str
    thinking_budget: int
    max_file_size: int


@dataclass(frozen=True)
class ChannelPolicy:
    """Plugin-config switches that decide what a turn in a channel may do."""

    tools_in_channels: bool = False
    native_web_search_in_channels: bool = False


class AgentRegistry:
    """Registry calls with the current caller's identity, and the live plugin config."""

    def __init__(self, registry: registry_pb2_grpc.RegistryAsyncStub, config: PluginConfigWatcher) -> None:
        self.registry = registry
        self.config = config

    async def check_access(self, ctx: RequestContext) -> None:
        """PermissionDenied when the user may not use the agent here."""
        reply = await unary(
            self.registry.CheckAgentAccess,
            registry_pb2.CheckAgentAccessRequest(
                agent_id=ctx.agent_id,
                user_id=ctx.user_id,
                channel_id=ctx.channel_id,
                is_direct_message=ctx.is_direct_message,
                user_team_ids=list(ctx.user_team_ids),
            ),
        )
        if not reply.allowed:
            raise PermissionDenied(reply.reason or "you may not use this agent here")

    async def agent(self, agent_id: str) -> AgentProfile:
        """The agent's settings a turn runs with; the registry's NotFound for an unknown agent."""
        reply = await unary(self.registry.GetAgent, registry_pb2.GetAgentRequest(id=agent_id))
        a = reply.agent
        return AgentProfile(
            id=a.id,
            username=a.username,
            display_name=a.display_name or a.username,
            bot_user_id=a.bot_user_id,
            service_id=a.service_id,
            model=a.model,
            custom_instructions=a.custom_instructions,
            enable_vision=a.enable_vision,
            disable_tools=a.disable_tools,
            native_web_search="web_search" in a.enabled_native_tools,
            reasoning_enabled=a.reasoning_enabled,
            reasoning_effort=a.reasoning_effort,
            thinking_budget=a.thinking_budget,
            max_file_size=a.max_file_size or AGENT_MAX_FILE_BYTES,
        )

    async def channel_policy(self) -> ChannelPolicy:
        """The channel switches of the live plugin config; both off (the safe side) while the
        registry's config stream has not delivered a first revision."""
        try:
            snapshot = self.config.current if self.config.ready else await self.config.wait_ready(CONFIG_WAIT_SECONDS)
        except DomainError:
            logger.warning("plugin config unavailable; tools and native web search stay off in channels")
            return ChannelPolicy()
        return ChannelPolicy(
            tools_in_channels=snapshot.config.enable_channel_mention_tool_calling,
            native_web_search_in_channels=snapshot.config.allow_native_web_search_in_channels,
        )
