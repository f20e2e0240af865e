"""The other services the loop asks: the registry (agents, access, credentials, plugin config) and
the tools service. gRPC stays in this module; the loop sees plain data and domain errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import json_format, struct_pb2

from services.common.errors import DomainError, PermissionDenied
from services.common.grpc_client import ChannelPool, idempotent, unary
from services.common.plugin_config import PluginConfigWatcher
from services.common.settings import CommonSettings
from services.llm.conversations.approvals import AvailableTool
from services.llm.conversations.model import RequestContext
from services.llm.providers.base import Annotation

logger = logging.getLogger(__name__)

# How long a turn waits for the registry's first config revision right after start-up.
CONFIG_WAIT_SECONDS = 2.0
DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024


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


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool
    # Sources the answer may link to (web search results, a fetched page).
    citations: tuple[Annotation, ...] = ()


class Peers:
    """Calls to the registry and the tools service with the current caller's identity."""

    def __init__(self, settings: CommonSettings, pool: ChannelPool, config: PluginConfigWatcher) -> None:
        registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
        tools_service = tools_pb2.DESCRIPTOR.services_by_name["Tools"]
        self.registry = registry_pb2_grpc.RegistryStub(pool.get(settings.index_addr, idempotent(registry_service)))
        self.tools = tools_pb2_grpc.ToolsStub(pool.get(settings.tools_addr, idempotent(tools_service)))
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
            max_file_size=a.max_file_size or DEFAULT_MAX_FILE_BYTES,
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

    async def list_tools(self, ctx: RequestContext, conversation_id: str, *, automated: bool) -> list[AvailableTool]:
        """Tools the model may call here with their approval, or none when the tools service fails
        (the answer then comes without tools rather than not at all)."""
        try:
            reply = await unary(
                self.tools.ListTools,
                tools_pb2.ListToolsRequest(context=_tool_context(ctx, conversation_id, automated)),
            )
        except DomainError as err:
            logger.warning("tools unavailable for this turn: %s", err.message)
            return []
        tools = []
        for t in reply.tools:
            if t.policy.approval == tools_pb2.APPROVAL_POLICY_DISABLED:
                continue
            schema = json_format.MessageToDict(t.input_schema) if t.HasField("input_schema") else {}
            tools.append(
                AvailableTool(
                    name=t.name,
                    description=t.description,
                    input_schema=schema or {"type": "object", "properties": {}},
                    server_origin=t.server_origin,
                    auto_approved=t.auto_approved,
                )
            )
        return tools

    async def execute_tool(
        self, ctx: RequestContext, conversation_id: str, name: str, arguments: dict[str, object], call_id: str
    ) -> ToolOutcome:
        """Run a tool as the requesting user; refusals become error results for the model."""
        args = struct_pb2.Struct()
        args.update(arguments)
        try:
            reply = await unary(
                self.tools.ExecuteTool,
                tools_pb2.ExecuteToolRequest(
                    context=_tool_context(ctx, conversation_id, False),
                    tool_name=name,
                    arguments=args,
                    tool_call_id=call_id,
                ),
            )
        except DomainError as err:
            return ToolOutcome(f"the tool could not run: {err.message}", True)
        citations = tuple(Annotation(url=c.url, title=c.title) for c in reply.citations if c.url)
        return ToolOutcome(reply.content, reply.is_error, citations)


def _tool_context(ctx: RequestContext, conversation_id: str, automated: bool) -> tools_pb2.ToolContext:
    return tools_pb2.ToolContext(
        user_id=ctx.user_id,
        agent_id=ctx.agent_id,
        channel_id=ctx.channel_id,
        team_id=ctx.team_id,
        is_direct_message=ctx.is_direct_message,
        conversation_id=conversation_id,
        automated_invoker=automated,
    )
