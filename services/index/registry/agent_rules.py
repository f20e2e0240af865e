"""Pure rules for agent writes: field validation, provider-dependent defaults and conflicts,
management permissions and the MCP tool clean-up on save."""

from __future__ import annotations

import dataclasses
import re

from services.common.errors import InvalidInput, PermissionDenied
from services.common.identity import MANAGE_OTHERS_AGENT, MANAGE_OWN_AGENT, Identity
from services.common.licensing import FREE_TIER_AGENT_LIMIT, Feature, License, require
from services.common.structured_output import supports_structured_output
from services.index.registry.agents import AccessLevel, Agent, McpToolRef
from services.index.registry.callers import is_system

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]*$")
MAX_USERNAME = 64  # Mattermost's username limit and the column width
MAX_DISPLAY_NAME = 256
MAX_INSTRUCTIONS = 16384  # runes, as the plugin counts them
MAX_MODEL = 512
MAX_IDS = 1000
NATIVE_TOOLS = frozenset({"web_search", "file_search", "code_interpreter"})
REASONING_EFFORTS = frozenset({"", "minimal", "low", "medium", "high"})

_WEB_SEARCH_TYPES = frozenset({"anthropic", "openai", "gemini", "vertex"})
_RESPONSES_TOGGLE_TYPES = frozenset({"openaicompatible", "azure"})


def supports_native_web_search(service_type: str, use_responses_api: bool) -> bool:
    """Whether the provider has its own web search (OpenAI-compatible and Azure only with the Responses API)."""
    return service_type in _WEB_SEARCH_TYPES or (service_type in _RESPONSES_TOGGLE_TYPES and use_responses_api)


def validate_username(username: str) -> None:
    """Raise InvalidInput unless the username is one Mattermost accepts for a bot."""
    if not username:
        raise InvalidInput("username is required", field="username")
    if len(username) > MAX_USERNAME:
        raise InvalidInput(f"username is longer than {MAX_USERNAME} characters", field="username")
    if not USERNAME_RE.match(username):
        raise InvalidInput(
            "username must start with a lowercase letter and use only a-z, 0-9, '.', '_' and '-'", field="username"
        )


def validate_agent(agent: Agent, service_type: str) -> None:
    """Raise InvalidInput naming the first bad field (JSON names, as the client sent them)."""
    _validate_texts(agent)
    _validate_access_rules(agent)
    _validate_features(agent, service_type)


def _validate_texts(agent: Agent) -> None:
    validate_username(agent.username)
    if not agent.display_name.strip():
        raise InvalidInput("displayName is required", field="displayName")
    if len(agent.display_name) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"displayName is longer than {MAX_DISPLAY_NAME} characters", field="displayName")
    if len(agent.custom_instructions) > MAX_INSTRUCTIONS:
        raise InvalidInput(
            f"customInstructions is longer than {MAX_INSTRUCTIONS} characters", field="customInstructions"
        )
    if len(agent.model) > MAX_MODEL:
        raise InvalidInput(f"model is longer than {MAX_MODEL} characters", field="model")


def _validate_access_rules(agent: Agent) -> None:
    for name, level in (
        ("channelAccessLevel", agent.channel_access_level),
        ("userAccessLevel", agent.user_access_level),
    ):
        if int(level) not in {lvl.value for lvl in AccessLevel}:
            raise InvalidInput(f"{name} must be 0 (all), 1 (allow), 2 (block) or 3 (none)", field=name)
    for name, ids in (
        ("channelIDs", agent.channel_ids),
        ("userIDs", agent.user_ids),
        ("teamIDs", agent.team_ids),
        ("adminUserIDs", agent.admin_user_ids),
    ):
        if len(ids) > MAX_IDS:
            raise InvalidInput(f"{name} lists more than {MAX_IDS} ids", field=name)
        if any(not i or len(i) > 64 for i in ids):
            raise InvalidInput(f"{name} contains an empty or oversized id", field=name)


def _validate_features(agent: Agent, service_type: str) -> None:
    unknown = set(agent.enabled_native_tools) - NATIVE_TOOLS
    if unknown:
        raise InvalidInput(f"unknown native tool {sorted(unknown)[0]}", field="enabledNativeTools")
    if agent.reasoning_effort not in REASONING_EFFORTS:
        raise InvalidInput("reasoningEffort must be minimal, low, medium or high", field="reasoningEffort")
    if agent.thinking_budget < 0:
        raise InvalidInput("thinkingBudget must not be negative", field="thinkingBudget")
    if service_type == "anthropic" and agent.reasoning_enabled and agent.structured_output_enabled:
        raise InvalidInput(
            "structured output and extended thinking cannot be used together on Anthropic services",
            field="structuredOutputEnabled",
        )


def apply_create_defaults(agent: Agent, service_type: str, use_responses_api: bool, defaulted: set[str]) -> Agent:
    """Fill fields the creator left out: native web search and structured output on where the
    provider supports them (on Anthropic structured output wins over thinking unless thinking was
    asked for explicitly, since the two cannot be combined there)."""
    native = agent.enabled_native_tools
    if "enabledNativeTools" in defaulted:
        native = ("web_search",) if supports_native_web_search(service_type, use_responses_api) else ()
    reasoning = agent.reasoning_enabled if "reasoningEnabled" not in defaulted else True
    structured = agent.structured_output_enabled
    if "structuredOutputEnabled" in defaulted:
        structured = supports_structured_output(service_type)
        if service_type == "anthropic":
            if "reasoningEnabled" in defaulted:
                reasoning = False
            else:
                structured = structured and not reasoning
    return dataclasses.replace(
        agent,
        enabled_native_tools=native,
        reasoning_enabled=reasoning,
        structured_output_enabled=structured,
        mcp_dynamic_tool_loading=True if "mcpDynamicToolLoading" in defaulted else agent.mcp_dynamic_tool_loading,
    )


def check_agent_license(agent: Agent, license: License, active_count: int, *, creating: bool) -> None:
    """Without a license: one agent, and no fine-grained access rules."""
    if creating and active_count >= FREE_TIER_AGENT_LIMIT:
        require(license, Feature.MULTIPLE_AGENTS)
    if agent.channel_access_level != AccessLevel.ALL or agent.user_access_level != AccessLevel.ALL:
        require(license, Feature.FINE_GRAINED_ACCESS)


def require_create(caller: Identity) -> None:
    """Raise PermissionDenied unless the caller may create agents."""
    if not (is_system(caller) or caller.has(MANAGE_OWN_AGENT)):
        raise PermissionDenied("you do not have permission to create agents")


def can_manage(caller: Identity, agent: Agent) -> bool:
    """System admins manage every agent (migrated ones have no creator); the creator and listed
    agent admins manage theirs; manage_others_agent manages all."""
    if is_system(caller) or caller.is_system_admin or caller.has(MANAGE_OTHERS_AGENT):
        return True
    if not caller.user_id:
        return False
    return (bool(agent.creator_id) and caller.user_id == agent.creator_id) or caller.user_id in agent.admin_user_ids


def require_manage(caller: Identity, agent: Agent) -> None:
    """Raise PermissionDenied unless the caller may edit and delete the agent."""
    if not can_manage(caller, agent):
        raise PermissionDenied(f"you do not have permission to manage agent {agent.username}")


def drop_unavailable_tools(
    tools: tuple[McpToolRef, ...], available: tuple[McpToolRef, ...]
) -> tuple[tuple[McpToolRef, ...], tuple[McpToolRef, ...]]:
    """(kept, dropped): selections no longer offered by any server are removed on save. An empty
    ``available`` means the caller could not tell, so nothing is dropped."""
    if not available:
        return tools, ()
    offered = set(available)
    origins = {t.server_origin for t in available}
    kept = tuple(t for t in tools if t in offered or (t.tool_name == "*" and t.server_origin in origins))
    return kept, tuple(t for t in tools if t not in kept)
