"""Agent write rules: usernames, provider defaults and conflicts, permissions, license, MCP clean-up."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.errors import InvalidInput, PermissionDenied
from services.common.identity import MANAGE_OWN_AGENT, MANAGE_SYSTEM, Identity
from services.common.licensing import License
from services.index.registry.agent_rules import (
    apply_create_defaults,
    can_manage,
    check_agent_license,
    drop_unavailable_tools,
    validate_agent,
    validate_username,
)
from services.index.registry.agents import AccessLevel, Agent, McpToolRef

AGENT = Agent(id="a", bot_user_id="b", username="helper", service_id="s", display_name="Helper", creator_id="u1")
ALL_DEFAULTED = {"enabledNativeTools", "structuredOutputEnabled", "reasoningEnabled", "mcpDynamicToolLoading"}


@pytest.mark.parametrize("name", ["Helper", "1bot", "has space", "", "a" * 65])
def test_invalid_usernames_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_username(name)
    assert err.value.field == "username"


def test_openai_agents_default_to_web_search_and_structured_output() -> None:
    agent = apply_create_defaults(AGENT, "openai", True, ALL_DEFAULTED)
    assert agent.enabled_native_tools == ("web_search",) and agent.structured_output_enabled and agent.reasoning_enabled


def test_compatible_services_get_web_search_only_with_the_responses_api() -> None:
    assert apply_create_defaults(AGENT, "openaicompatible", False, ALL_DEFAULTED).enabled_native_tools == ()
    assert apply_create_defaults(AGENT, "openaicompatible", True, ALL_DEFAULTED).enabled_native_tools == ("web_search",)


def test_anthropic_with_explicit_thinking_defaults_structured_output_off() -> None:
    explicit = dataclasses.replace(AGENT, reasoning_enabled=True)
    agent = apply_create_defaults(explicit, "anthropic", False, ALL_DEFAULTED - {"reasoningEnabled"})
    assert agent.reasoning_enabled and not agent.structured_output_enabled


def test_reasoning_with_structured_output_on_anthropic_is_refused() -> None:
    both = dataclasses.replace(AGENT, reasoning_enabled=True, structured_output_enabled=True)
    with pytest.raises(InvalidInput) as err:
        validate_agent(both, "anthropic")
    assert err.value.field == "structuredOutputEnabled"
    validate_agent(both, "openai")


def test_creators_and_listed_admins_manage_an_agent_others_do_not() -> None:
    agent = dataclasses.replace(AGENT, admin_user_ids=("u2",))
    own = frozenset({MANAGE_OWN_AGENT})
    assert can_manage(Identity("u1", own), agent) and can_manage(Identity("u2", own), agent)
    assert not can_manage(Identity("u3", own), agent)
    assert can_manage(Identity("u3", frozenset({MANAGE_SYSTEM})), agent)


def test_migrated_agents_are_managed_by_system_admins_only() -> None:
    migrated = dataclasses.replace(AGENT, creator_id="")
    assert not can_manage(Identity("", frozenset({MANAGE_OWN_AGENT})), migrated)
    assert can_manage(Identity("x", frozenset({MANAGE_SYSTEM})), migrated)


def test_without_a_license_a_second_agent_and_access_rules_are_refused() -> None:
    with pytest.raises(PermissionDenied, match="multiple agent"):
        check_agent_license(AGENT, License.NONE, 1, creating=True)
    with pytest.raises(PermissionDenied, match="fine-grained"):
        check_agent_license(
            dataclasses.replace(AGENT, user_access_level=AccessLevel.BLOCK), License.NONE, 0, creating=False
        )
    check_agent_license(AGENT, License.ENTRY, 5, creating=True)


def test_tools_no_longer_available_are_dropped_and_reported() -> None:
    tools = (McpToolRef("a", "x"), McpToolRef("a", "gone"), McpToolRef("b", "*"), McpToolRef("c", "*"))
    kept, dropped = drop_unavailable_tools(tools, (McpToolRef("a", "x"), McpToolRef("b", "y")))
    assert kept == (McpToolRef("a", "x"), McpToolRef("b", "*"))
    assert dropped == (McpToolRef("a", "gone"), McpToolRef("c", "*"))
