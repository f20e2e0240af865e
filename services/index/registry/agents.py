"""Agents and the rules that decide who may use them where (the plugin's usage restrictions)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AccessLevel(enum.IntEnum):
    """Who may use an agent, or where: values match agents.registry.v1.AccessLevel and the plugin's."""

    ALL = 0
    ALLOW = 1
    BLOCK = 2
    NONE = 3


@dataclass(frozen=True)
class McpToolRef:
    """An MCP tool an agent may use, by server and tool name."""

    server_origin: str
    tool_name: str  # "*" for every tool of the server


@dataclass(frozen=True)
class Agent:
    """One row of Agents_UserAgents."""

    id: str
    bot_user_id: str
    username: str
    service_id: str
    display_name: str = ""
    creator_id: str = ""  # "" for agents migrated from the legacy config
    custom_instructions: str = ""
    model: str = ""
    enable_vision: bool = False
    disable_tools: bool = False
    # Both levels: an int outside AccessLevel only on an agent a client sent, until validate_agent names it.
    channel_access_level: AccessLevel | int = AccessLevel.ALL
    channel_ids: tuple[str, ...] = ()
    user_access_level: AccessLevel | int = AccessLevel.ALL
    user_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()
    admin_user_ids: tuple[str, ...] = ()
    enabled_native_tools: tuple[str, ...] = ()
    enabled_mcp_tools: tuple[McpToolRef, ...] = ()
    auto_enable_new_mcp_tools: bool = False
    mcp_dynamic_tool_loading: bool = True
    reasoning_enabled: bool = True
    reasoning_effort: str = ""
    thinking_budget: int = 0
    structured_output_enabled: bool = False
    max_file_size: int = 0
    last_icon_update: int = 0
    create_at: int = 0
    update_at: int = 0
    delete_at: int = 0


@dataclass(frozen=True)
class AccessDecision:
    """Whether access is allowed and, when not, the reason shown to the user."""

    allowed: bool
    reason: str = ""


ALLOWED = AccessDecision(True)


def check_user_access(agent: Agent, user_id: str, user_team_ids: frozenset[str] | set[str]) -> AccessDecision:
    """The user rule: listed users, or active members of listed teams, are matched."""
    level = agent.user_access_level
    if level == AccessLevel.ALL:
        return ALLOWED
    if level == AccessLevel.NONE:
        return AccessDecision(False, f"agent {agent.username} is not available to any user")
    matched = user_id in agent.user_ids or bool(set(agent.team_ids) & set(user_team_ids))
    if level == AccessLevel.ALLOW and not matched:
        return AccessDecision(False, f"you are not on the list of users allowed to use agent {agent.username}")
    if level == AccessLevel.BLOCK and matched:
        return AccessDecision(False, f"you are blocked from using agent {agent.username}")
    return ALLOWED


def check_channel_access(agent: Agent, channel_id: str, *, is_direct_message: bool) -> AccessDecision:
    """The channel rule; DMs with the agent's bot and channel-less uses follow the user rule only."""
    if is_direct_message or not channel_id:
        return ALLOWED
    level = agent.channel_access_level
    if level == AccessLevel.ALL:
        return ALLOWED
    if level == AccessLevel.NONE:
        return AccessDecision(False, f"agent {agent.username} cannot be used in channels")
    listed = channel_id in agent.channel_ids
    if level == AccessLevel.ALLOW and not listed:
        return AccessDecision(False, f"agent {agent.username} is not enabled in this channel")
    if level == AccessLevel.BLOCK and listed:
        return AccessDecision(False, f"agent {agent.username} is blocked in this channel")
    return ALLOWED


def check_access(
    agent: Agent,
    user_id: str,
    user_team_ids: frozenset[str] | set[str],
    channel_id: str = "",
    *,
    is_direct_message: bool = False,
) -> AccessDecision:
    """The user rule, then the channel rule."""
    decision = check_user_access(agent, user_id, user_team_ids)
    if not decision.allowed:
        return decision
    return check_channel_access(agent, channel_id, is_direct_message=is_direct_message)


def usable_agents(
    agents: list[Agent],
    user_id: str,
    user_team_ids: frozenset[str] | set[str],
    channel_id: str,
    default_username: str,
) -> list[Agent]:
    """Agents the user may use in the channel, the default agent first, the rest by display name."""
    usable = [a for a in agents if check_access(a, user_id, user_team_ids, channel_id).allowed]
    usable.sort(key=lambda a: (a.username != default_username, a.display_name.lower(), a.username))
    return usable
