"""Pure rules: which tools are offered in a context and which run without asking."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2

from services.tools.catalog import (
    BUILTIN_TOOLS,
    MATTERMOST_ORIGIN,
    ToolFamily,
    ToolSpec,
    bound_arguments,
    require_tool,
)
from services.tools.config import configured_policies
from services.tools.policies import (
    AgentToolAccess,
    Approval,
    AutoRunScope,
    ToolContext,
    ToolPolicy,
    auto_approved,
    default_policy,
    effective_policy,
    offers,
    refusal,
)

DM = ToolContext(user_id="u", agent_id="a", channel_id="dm", is_direct_message=True)
CHANNEL = ToolContext(user_id="u", agent_id="a", channel_id="town", is_direct_message=False)
ALL = AgentToolAccess(auto_enable_all=True)


def names(context: ToolContext, agent: AgentToolAccess = ALL, *, channel_tools: bool = True, **policies) -> list[str]:
    stored = {name: p for name, p in policies.items()}
    return [o.spec.name for o in offers(BUILTIN_TOOLS, stored, context, agent, channel_tools_enabled=channel_tools)]


def test_reads_auto_run_in_dms_by_default_and_writes_ask() -> None:
    assert auto_approved(require_tool("read_post"), default_policy(require_tool("read_post")), DM)
    assert not auto_approved(require_tool("create_post"), default_policy(require_tool("create_post")), DM)


def test_web_tools_ask_by_default() -> None:
    assert default_policy(require_tool("web_search")).approval is Approval.ASK


def test_auto_run_in_dm_scope_asks_in_channels() -> None:
    spec = require_tool("read_channel")
    assert not auto_approved(spec, ToolPolicy(spec.name, True, Approval.AUTO, AutoRunScope.DM), CHANNEL)


def test_auto_run_everywhere_runs_unasked_in_channels() -> None:
    spec = require_tool("read_channel")
    assert auto_approved(spec, ToolPolicy(spec.name, True, Approval.AUTO, AutoRunScope.EVERYWHERE), CHANNEL)


def test_a_write_is_never_auto_approved_in_a_channel_even_when_auto_everywhere() -> None:
    spec = require_tool("create_post")
    policy = ToolPolicy(spec.name, True, Approval.AUTO, AutoRunScope.EVERYWHERE)
    assert not auto_approved(spec, policy, CHANNEL)
    assert auto_approved(spec, policy, DM)


def test_disabled_tools_are_not_offered() -> None:
    off = ToolPolicy("read_post", True, Approval.DISABLED)
    not_enabled = ToolPolicy("read_channel", False, Approval.AUTO)
    offered = names(DM, read_post=off, read_channel=not_enabled)
    assert "read_post" not in offered and "read_channel" not in offered and "search_posts" in offered


def test_channels_offer_no_tools_while_channel_tool_calling_is_off() -> None:
    assert names(CHANNEL, channel_tools=False) == []
    assert names(DM, channel_tools=False)


def test_automated_invokers_get_only_auto_run_everywhere_tools() -> None:
    automated = ToolContext(user_id="u", agent_id="a", is_direct_message=True, automated_invoker=True)
    everywhere = ToolPolicy("search_users", True, Approval.AUTO, AutoRunScope.EVERYWHERE)
    assert names(automated, search_users=everywhere) == ["search_users"]


def test_agent_selection_intersects_with_policies() -> None:
    agent = AgentToolAccess(selected=frozenset({(MATTERMOST_ORIGIN, "read_post"), ("https://mcp.example", "*")}))
    assert [n for n in names(DM, agent) if n.startswith(("read", "search", "get", "create"))] == ["read_post"]


def test_a_whole_server_selection_selects_every_mattermost_tool() -> None:
    agent = AgentToolAccess(selected=frozenset({(MATTERMOST_ORIGIN, "*")}))
    assert "create_post" in names(DM, agent) and "read_channel" in names(DM, agent)


def test_agents_with_tools_disabled_get_none() -> None:
    assert names(DM, AgentToolAccess(disable_tools=True, auto_enable_all=True)) == []


def test_native_web_search_replaces_the_built_in_web_tools() -> None:
    offered = names(DM, AgentToolAccess(auto_enable_all=True, native_web_search=True))
    assert "web_search" not in offered and "web_fetch" not in offered and "read_post" in offered


def test_refusal_names_the_reason() -> None:
    spec = require_tool("read_post")
    reason = refusal(spec, ToolPolicy(spec.name, False, Approval.AUTO), DM, ALL, channel_tools_enabled=True)
    assert reason is not None and "disabled" in reason


# --- the plugin configuration's tool_configs ----------------------------------------------------


def _tool_configs(*entries: tuple[str, str, bool]) -> list[registry_pb2.ToolConfig]:
    return [registry_pb2.ToolConfig(name=n, policy=p, enabled=e) for n, p, e in entries]


def test_tool_configs_policy_strings_map_to_approval_and_scope() -> None:
    got = configured_policies(
        _tool_configs(("read_post", "auto_run_everywhere", True), ("read_channel", "auto_run_in_dm", True))
    )
    assert got["read_post"] == ToolPolicy("read_post", True, Approval.AUTO, AutoRunScope.EVERYWHERE)
    assert got["read_channel"] == ToolPolicy("read_channel", True, Approval.AUTO, AutoRunScope.DM)


def test_an_unknown_tool_configs_policy_string_means_ask() -> None:
    assert configured_policies(_tool_configs(("read_post", "always", True)))["read_post"].approval is Approval.ASK


def test_tool_configs_for_web_or_unknown_tools_are_ignored() -> None:
    assert configured_policies(_tool_configs(("web_search", "auto_run_everywhere", True), ("nope", "ask", True))) == {}


def test_a_configured_policy_wins_over_a_stored_one_which_wins_over_the_default() -> None:
    spec = require_tool("read_post")
    configured = {"read_post": ToolPolicy("read_post", True, Approval.ASK)}
    stored = {"read_post": ToolPolicy("read_post", False, Approval.AUTO)}
    assert effective_policy(spec, configured, stored) == configured["read_post"]
    assert effective_policy(spec, {}, stored) == stored["read_post"]
    assert effective_policy(spec, {}, {}) == default_policy(spec)


def test_a_channel_analysis_offers_only_its_channel_readers_auto_run_without_channel_arguments() -> None:
    bound = ToolContext(user_id="u", agent_id="a", channel_id="town", bound_channel_id="town")
    # Whatever the agent selects and the channel switch says: the plugin force-loads them.
    found = offers(BUILTIN_TOOLS, {}, bound, AgentToolAccess(), channel_tools_enabled=False)
    assert [o.spec.name for o in found] == ["read_channel", "get_channel_info"]
    assert all(o.auto_approved for o in found)
    assert all("channel_id" not in o.spec.input_schema["properties"] for o in found)


def test_a_bound_reader_reads_the_analysed_channel_whatever_channel_the_model_names() -> None:
    arguments = bound_arguments(require_tool("read_channel"), {"channel_id": "elsewhere", "limit": 5}, "town")
    assert arguments == {"channel_id": "town", "limit": 5}


JIRA = "https://jira.example.com/mcp"


def _remote(name: str, origin: str = JIRA) -> ToolSpec:
    return ToolSpec(name, "", {"type": "object", "properties": {}}, ToolFamily.MCP, server_origin=origin)


def test_a_remote_tool_is_selected_by_its_server_and_name_or_the_whole_server() -> None:
    agent = AgentToolAccess(selected=frozenset({(JIRA, "echo"), ("https://wiki.example.com/mcp", "*")}))
    assert agent.selects(_remote("echo"))
    assert not agent.selects(_remote("add"))
    assert agent.selects(_remote("add", "https://wiki.example.com/mcp"))
    # A Mattermost-tool selection of the same name does not select a remote tool.
    assert not AgentToolAccess(selected=frozenset({(MATTERMOST_ORIGIN, "echo")})).selects(_remote("echo"))


def test_the_remote_servers_an_agent_may_contact() -> None:
    chosen = frozenset({(JIRA, "echo"), (MATTERMOST_ORIGIN, "*"), ("", "read_post")})
    assert AgentToolAccess(selected=chosen).remote_origins() == {JIRA}
    assert AgentToolAccess(auto_enable_all=True).remote_origins() is None  # every server
    assert AgentToolAccess(disable_tools=True, auto_enable_all=True).remote_origins() == frozenset()
