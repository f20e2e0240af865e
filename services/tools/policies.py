"""Tool policies and the rules that turn them into "offered?" and "runs without asking?".

A policy is set per tool by system admins: enabled state and approval (auto / ask / disabled),
with an auto-run scope (DM only, or everywhere). The effective answer for one request also depends
on where it happens (DM or channel), who invoked the agent (a person or another bot/plugin), the
plugin's channel tool-calling switch, and the agent's own selections. All of it is pure here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from services.tools.catalog import CHANNEL_ANALYSIS_TOOLS, MATTERMOST_ORIGIN, ToolFamily, ToolSpec, bound_to_channel


class Approval(enum.StrEnum):
    """Whether a tool runs without asking, asks the requester each time, or is never offered."""

    AUTO = "auto"
    ASK = "ask"
    DISABLED = "disabled"


class AutoRunScope(enum.StrEnum):
    """Where an ``AUTO`` tool runs without asking: in DMs only, or in channels too."""

    DM = "dm"
    EVERYWHERE = "everywhere"


@dataclass(frozen=True)
class ToolPolicy:
    """What an admin decided for one tool."""

    tool_name: str
    enabled: bool
    approval: Approval
    auto_run_scope: AutoRunScope = AutoRunScope.DM

    @property
    def usable(self) -> bool:
        """Whether the tool may be offered at all."""
        return self.enabled and self.approval is not Approval.DISABLED


# The plugin's tool_configs policy strings (mcp.embeddedServer.tool_configs[].policy).
_CONFIGURED_APPROVALS: dict[str, tuple[Approval, AutoRunScope]] = {
    "ask": (Approval.ASK, AutoRunScope.DM),
    "auto_run_in_dm": (Approval.AUTO, AutoRunScope.DM),
    "auto_run_everywhere": (Approval.AUTO, AutoRunScope.EVERYWHERE),
}


def policy_from_tool_config(name: str, policy: str, enabled: bool) -> ToolPolicy:
    """A plugin ``tool_configs`` entry as a policy; an unknown policy string means ``ask`` (the plugin's rule)."""
    approval, scope = _CONFIGURED_APPROVALS.get(policy.strip().lower(), (Approval.ASK, AutoRunScope.DM))
    return ToolPolicy(name, enabled, approval, scope)


def effective_policy(
    spec: ToolSpec, configured: Mapping[str, ToolPolicy], stored: Mapping[str, ToolPolicy]
) -> ToolPolicy:
    """The policy that applies to a built-in tool: the first of three sources that has one.

    1. the plugin configuration's entry for it (``mcp.embeddedServer.tool_configs``): the plugin's
       documented, admin-console-visible setting, so what the console shows is what happens;
    2. its ``tools_policies`` row (``SetPolicy``), for tools the configuration does not list (SetPolicy
       refuses a listed tool rather than store a row that would be silently ignored);
    3. the built-in default (the plugin's vetted seed).
    A row outlives its tool's listing: it applies again once the entry is removed from the configuration.
    """
    return configured.get(spec.name) or stored.get(spec.name) or default_policy(spec)


def default_policy(spec: ToolSpec) -> ToolPolicy:
    """The policy a tool has until an admin sets one.

    Reads of Mattermost data run without asking in DMs (the plugin's vetted embedded-tool seed);
    writes always ask; web tools ask, since the plugin's built-in web search has no policy and
    always needs the user's approval.
    """
    if spec.writes or spec.family is ToolFamily.WEB:
        return ToolPolicy(spec.name, True, Approval.ASK, AutoRunScope.DM)
    return ToolPolicy(spec.name, True, Approval.AUTO, AutoRunScope.DM)


@dataclass(frozen=True)
class ToolContext:
    """Who asks, for which agent, where (the request's ``ToolContext``)."""

    user_id: str
    agent_id: str = ""
    channel_id: str = ""
    team_id: str = ""
    is_direct_message: bool = False
    conversation_id: str = ""
    automated_invoker: bool = False
    # A channel analysis bound to this channel (see ``CHANNEL_ANALYSIS_TOOLS``); "" otherwise.
    bound_channel_id: str = ""


@dataclass(frozen=True)
class AgentToolAccess:
    """The agent's side of the intersection: its tool switch and MCP-tab selections."""

    disable_tools: bool = False
    native_web_search: bool = False
    auto_enable_all: bool = False
    # (server_origin, tool_name) pairs; tool_name "*" selects the whole server.
    selected: frozenset[tuple[str, str]] = frozenset()
    # Server origins the user turned off in the tools popover (the registry's tool preferences).
    disabled_origins: frozenset[str] = frozenset()

    def selects(self, spec: ToolSpec) -> bool:
        """Whether the agent's settings allow this built-in tool."""
        if self.disable_tools:
            return False
        if spec.family is ToolFamily.WEB:
            # The provider's own search replaces the built-in one (admin guide: prefer native).
            return not self.native_web_search
        if spec.family is ToolFamily.USER:  # built into the agent, not an MCP tool to select
            return True
        if spec.family is ToolFamily.MCP:
            if spec.server_origin in self.disabled_origins:
                return False
            return self.auto_enable_all or any(
                origin == spec.server_origin and name in ("*", spec.name) for origin, name in self.selected
            )
        if MATTERMOST_ORIGIN in self.disabled_origins:
            return False
        if self.auto_enable_all:
            return True
        # Built-in Mattermost tools stand in for the plugin's embedded server; "" also matches
        # because the tools API reports built-ins with an empty origin.
        return any(origin in ("", MATTERMOST_ORIGIN) and name in ("*", spec.name) for origin, name in self.selected)

    def remote_origins(self) -> frozenset[str] | None:
        """The remote MCP servers the agent may use: None for every one, else their origins
        (possibly none). A server outside them is never contacted for this agent."""
        if self.disable_tools:
            return frozenset()
        if self.auto_enable_all:
            return None
        excluded = {"", MATTERMOST_ORIGIN, *self.disabled_origins}
        return frozenset(origin for origin, _ in self.selected if origin not in excluded)


@dataclass(frozen=True)
class Offer:
    """One tool as offered in a context: its policy and whether it runs without asking."""

    spec: ToolSpec
    policy: ToolPolicy
    auto_approved: bool


def refusal(
    spec: ToolSpec,
    policy: ToolPolicy,
    context: ToolContext,
    agent: AgentToolAccess,
    *,
    channel_tools_enabled: bool,
) -> str | None:
    """Why the tool may not be used in this context, or None when it may."""
    if not policy.usable:
        return f"tool {spec.name} is disabled by an administrator"
    if context.bound_channel_id:
        # The plugin force-loads a channel analysis's readers, whatever the agent selects.
        if spec.name not in CHANNEL_ANALYSIS_TOOLS:
            return f"a channel analysis runs only {' and '.join(CHANNEL_ANALYSIS_TOOLS)}"
        return None
    if not agent.selects(spec):
        return f"tool {spec.name} is not enabled for this agent"
    if not context.is_direct_message and not channel_tools_enabled:
        return "tools are available in direct messages only (channel tool calling is off)"
    if context.automated_invoker and not _runs_unasked_everywhere(spec, policy):
        return f"tool {spec.name} is not auto-run everywhere, as tools for automated invocations must be"
    return None


def _runs_unasked_everywhere(spec: ToolSpec, policy: ToolPolicy) -> bool:
    return policy.approval is Approval.AUTO and policy.auto_run_scope is AutoRunScope.EVERYWHERE and not spec.writes


def auto_approved(spec: ToolSpec, policy: ToolPolicy, context: ToolContext) -> bool:
    """Whether a call runs without asking the requester. Writes never auto-run outside DMs."""
    if not policy.usable:
        return False
    if context.bound_channel_id:  # the plugin auto-runs a channel analysis's reads
        return True
    if policy.approval is not Approval.AUTO:
        return False
    if context.is_direct_message:
        return True
    return policy.auto_run_scope is AutoRunScope.EVERYWHERE and not spec.writes


def offers(
    specs: tuple[ToolSpec, ...],
    policies: Mapping[str, ToolPolicy],
    context: ToolContext,
    agent: AgentToolAccess,
    *,
    channel_tools_enabled: bool,
) -> list[Offer]:
    """The tools offered in ``context``, in catalog order, each with its effective approval.
    ``policies`` are the effective ones by name; a tool without one has its default."""
    result = []
    for spec in specs:
        policy = policies.get(spec.name) or default_policy(spec)
        if refusal(spec, policy, context, agent, channel_tools_enabled=channel_tools_enabled) is None:
            offered = bound_to_channel(spec) if context.bound_channel_id else spec
            result.append(Offer(offered, policy, auto_approved(spec, policy, context)))
    return result
