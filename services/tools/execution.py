"""The tools service's use cases: list tools for a context, execute one, read and set policies.

Execution order for one call: resolve the tool (unknown → InvalidInput), check the caller acts
for the context's user, load the agent (NotFound / PermissionDenied), apply the policy, validate
the arguments, run. A tool that runs and fails gives ``is_error`` with a message for the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.trace import Status, StatusCode

from services.common import attributes
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    UpstreamUnavailable,
)
from services.common.identity import Identity
from services.common.telemetry import tracer
from services.tools.catalog import (
    BUILTIN_TOOLS,
    ToolFamily,
    ToolSpec,
    bound_arguments,
    find_tool,
    first_of_each_name,
    require_tool,
    validate_arguments,
)
from services.tools.config import ToolsConfig
from services.tools.mattermost_tools import MattermostTools
from services.tools.policies import (
    AgentToolAccess,
    Offer,
    ToolContext,
    ToolPolicy,
    auto_approved,
    default_policy,
    effective_policy,
    offers,
    refusal,
)
from services.tools.results import ToolFailed, ToolResult
from services.tools.store import PolicyStore
from services.tools.websearch.web_tools import WebTools

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentTools:
    """What the registry says about the agent, as far as tools go."""

    access: AgentToolAccess
    bot_user_id: str = ""


class AgentDirectory(Protocol):
    """The registry: the agent's tool settings, after checking the user may use it in the channel."""

    async def agent_tools(self, context: ToolContext) -> AgentTools:
        """NotFound for an unknown agent; PermissionDenied when the user may not use it."""
        ...


class RemoteToolDirectory(Protocol):
    """The mcp service: remote MCP tools listed and run as the user."""

    async def tools(self, user_id: str, origins: frozenset[str] | None) -> list[tuple[ToolSpec, ToolPolicy]]:
        """The tools of the servers in ``origins`` (every server for None), each with its policy."""
        ...

    async def call(self, user_id: str, spec: ToolSpec, arguments: dict[str, Any]) -> ToolResult:
        """Run the remote tool as the user."""
        ...


class ToolService:
    """ListTools, ExecuteTool and the policy RPCs, free of gRPC."""

    def __init__(
        self,
        *,
        policies: PolicyStore,
        agents: AgentDirectory,
        config: Callable[[], ToolsConfig],
        mattermost: MattermostTools,
        web: WebTools,
        remote: RemoteToolDirectory,
    ) -> None:
        self._remote = remote
        self._policies = policies
        self._agents = agents
        self._config = config
        self._mm_handlers = mattermost.handlers()
        self._web = web

    async def _effective(self, config: ToolsConfig) -> dict[str, ToolPolicy]:
        """Every built-in tool's policy as it applies now (see ``effective_policy`` for the order)."""
        stored = await self._policies.all()
        return {spec.name: effective_policy(spec, config.configured_policies, stored) for spec in BUILTIN_TOOLS}

    def _specs(self, config: ToolsConfig) -> tuple[ToolSpec, ...]:
        # Web tools exist only while web search is configured (the plugin's exposure rule).
        return tuple(s for s in BUILTIN_TOOLS if s.family is not ToolFamily.WEB or config.web_search.configured)

    async def list_tools(self, caller: Identity, context: ToolContext) -> list[Offer]:
        """The tools the agent may use for the user in this context, each with its effective policy."""
        _check_caller(caller, context)
        agent = await self._agents.agent_tools(context)
        config = self._config()
        builtin = offers(
            self._specs(config),
            await self._effective(config),
            context,
            agent.access,
            channel_tools_enabled=config.channel_tools_enabled,
        )
        remote = [
            Offer(spec, policy, auto_approved(spec, policy, context))
            for spec, policy in await self._remote_tools(context, agent.access)
            if refusal(spec, policy, context, agent.access, channel_tools_enabled=config.channel_tools_enabled) is None
        ]
        return builtin + remote

    async def _remote_tools(self, context: ToolContext, access: AgentToolAccess) -> list[tuple[ToolSpec, ToolPolicy]]:
        """The agent's remote MCP tools by unique name: built-ins win a clash, then the first server
        (among the tools the agent selected: an unselected tool of one server hides no other's)."""
        origins = access.remote_origins()
        if origins is not None and not origins:
            return []  # nothing to ask: the mcp service (and every server) stays uncontacted
        selected = [t for t in await self._remote.tools(context.user_id, origins) if access.selects(t[0])]
        return first_of_each_name(selected, lambda t: t[0].name, (spec.name for spec in BUILTIN_TOOLS))

    async def execute(
        self, caller: Identity, context: ToolContext, tool_name: str, arguments: dict[str, Any], tool_call_id: str
    ) -> ToolResult:
        """Run one tool as the requesting user."""
        with tracer(__name__).start_as_current_span("resolve tool") as span:
            span.set_attribute(attributes.TOOL_NAME, tool_name)
            span.set_attribute(attributes.TOOL_ID, tool_call_id)
            span.set_attribute(attributes.USER_ID, context.user_id)
            if context.channel_id:
                span.set_attribute(attributes.CHANNEL_ID, context.channel_id)
            try:
                result = await self._execute(caller, context, tool_name, arguments, tool_call_id)
            except DomainError as exc:
                span.set_attribute(attributes.TOOL_STATUS, "refused")
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute(attributes.TOOL_STATUS, "error" if result.is_error else "success")
            if result.is_error:
                span.set_status(Status(StatusCode.ERROR, "tool error"))
            return result

    async def _execute(
        self, caller: Identity, context: ToolContext, tool_name: str, arguments: dict[str, Any], tool_call_id: str
    ) -> ToolResult:
        spec = find_tool(tool_name)
        if spec is None:
            return await self._execute_remote(caller, context, tool_name, arguments)
        config = self._config()
        if spec not in self._specs(config):
            raise InvalidInput(f"tool {tool_name!r} is not available (web search is not configured)", field="tool_name")
        _check_caller(caller, context)
        agent = await self._agents.agent_tools(context)
        policy = (await self._effective(config))[spec.name]
        reason = refusal(spec, policy, context, agent.access, channel_tools_enabled=config.channel_tools_enabled)
        if reason is not None:
            raise PermissionDenied(reason)
        if spec.family is ToolFamily.USER:
            raise InvalidInput(f"{spec.name} is answered by the requesting user, not run", field="tool_name")
        if context.bound_channel_id:
            args = bound_arguments(spec, arguments, context.bound_channel_id)
        else:
            args = validate_arguments(spec, arguments)
        try:
            if spec.family is ToolFamily.WEB:
                if spec.name == "web_search":
                    return await self._web.web_search(
                        args, config=config, conversation_id=context.conversation_id, tool_call_id=tool_call_id
                    )
                return await self._web.web_fetch(args, config=config, conversation_id=context.conversation_id)
            return await self._mm_handlers[spec.name](
                context.user_id,
                args,
                team_id=context.team_id,
                semantic_enabled=config.semantic_search_enabled,
                agent_bot_user_id=agent.bot_user_id,
            )
        except ToolFailed as exc:
            return ToolResult(exc.message, is_error=True)
        except (NotFound, PermissionDenied) as exc:
            # From Mattermost while running: the model hears it failed, not why in detail.
            logger.info("tool %s hit %s", spec.name, type(exc).__name__)
            return ToolResult("not found, or the user cannot access it", is_error=True)
        except UpstreamUnavailable as exc:
            return ToolResult(f"a service the tool needs is unavailable: {exc.message}", is_error=True)

    async def _execute_remote(
        self, caller: Identity, context: ToolContext, tool_name: str, arguments: dict[str, Any]
    ) -> ToolResult:
        """A remote MCP tool the agent may use, under the same refusal rules as a built-in one."""
        _check_caller(caller, context)
        agent = await self._agents.agent_tools(context)
        found = {spec.name: (spec, policy) for spec, policy in await self._remote_tools(context, agent.access)}
        if tool_name not in found:
            raise InvalidInput(f"unknown tool {tool_name!r}", field="tool_name")
        spec, policy = found[tool_name]
        config = self._config()
        reason = refusal(spec, policy, context, agent.access, channel_tools_enabled=config.channel_tools_enabled)
        if reason is not None:
            raise PermissionDenied(reason)
        return await self._remote.call(context.user_id, spec, arguments)

    async def get_policy(self, tool_name: str) -> ToolPolicy:
        """The policy that applies to a tool; NotFound for an unknown tool."""
        spec = find_tool(tool_name)
        if spec is None:
            raise NotFound(f"unknown tool {tool_name!r}")
        return (await self._effective(self._config()))[spec.name]

    async def list_policies(self) -> list[ToolPolicy]:
        """Every built-in tool's policy as it applies, in catalog order."""
        effective = await self._effective(self._config())
        return [effective[spec.name] for spec in BUILTIN_TOOLS]

    @staticmethod
    def vetted_seed() -> list[ToolPolicy]:
        """The embedded Mattermost server's vetted seed: its reading tools at their built-in defaults."""
        return [
            default_policy(spec) for spec in BUILTIN_TOOLS if spec.family is ToolFamily.MATTERMOST and not spec.writes
        ]

    async def set_policy(self, caller: Identity, policy: ToolPolicy) -> ToolPolicy:
        """Store a tool's policy; system admins only, InvalidInput for an unknown tool."""
        if not caller.is_system_admin:
            raise PermissionDenied("only system admins can change tool policies")
        require_tool(policy.tool_name)
        if policy.tool_name in self._config().configured_policies:
            # The configuration's entry wins; a row stored now would be silently ignored.
            raise FailedPrecondition(
                f"tool {policy.tool_name} is configured in the plugin configuration "
                "(mcp.embeddedServer.tool_configs); change it there"
            )
        await self._policies.put(policy, caller.user_id)
        logger.info("tool policy changed", extra={"tool": policy.tool_name, "by": caller.user_id})
        return policy


def _check_caller(caller: Identity, context: ToolContext) -> None:
    if not context.user_id:
        raise InvalidInput("context.user_id is required", field="context.user_id")
    if not context.agent_id:
        raise InvalidInput("context.agent_id is required", field="context.agent_id")
    # Only a service holding the cluster credential may act for a user other than itself.
    if not caller.internal and caller.user_id != context.user_id:
        raise PermissionDenied("tools run only for the calling user")
