from __future__ import annotations

from services.index.registry.agents import AccessLevel, Agent, check_access, usable_agents


def agent(username: str = "a", **kw) -> Agent:
    return Agent(id=username, bot_user_id=f"bot-{username}", username=username, service_id="s", **kw)


def test_allow_list_admits_listed_users_and_members_of_listed_teams() -> None:
    a = agent(user_access_level=AccessLevel.ALLOW, user_ids=("u1",), team_ids=("t1",))
    assert check_access(a, "u1", set()).allowed
    assert check_access(a, "u2", {"t1"}).allowed
    assert not check_access(a, "u3", {"t9"}).allowed


def test_block_list_refuses_listed_users_and_members_of_listed_teams() -> None:
    a = agent(user_access_level=AccessLevel.BLOCK, user_ids=("u1",), team_ids=("t1",))
    assert not check_access(a, "u1", set()).allowed
    assert not check_access(a, "u2", {"t1"}).allowed
    assert check_access(a, "u3", set()).allowed


def test_no_user_level_refuses_everyone_with_a_reason() -> None:
    decision = check_access(agent(user_access_level=AccessLevel.NONE), "u1", set())
    assert not decision.allowed and decision.reason


def test_channel_rules_apply_to_channels_but_not_to_the_bot_dm() -> None:
    a = agent(channel_access_level=AccessLevel.NONE)
    assert not check_access(a, "u1", set(), "c1").allowed
    assert check_access(a, "u1", set(), "dm", is_direct_message=True).allowed


def test_channel_allow_and_block_lists() -> None:
    allow = agent(channel_access_level=AccessLevel.ALLOW, channel_ids=("c1",))
    block = agent(channel_access_level=AccessLevel.BLOCK, channel_ids=("c1",))
    assert check_access(allow, "u", set(), "c1").allowed
    assert not check_access(allow, "u", set(), "c2").allowed
    assert not check_access(block, "u", set(), "c1").allowed
    assert check_access(block, "u", set(), "c2").allowed


def test_usable_agents_put_the_default_first_then_sort_by_display_name() -> None:
    agents = [agent("zed", display_name="Zed"), agent("amy", display_name="Amy"), agent("dflt", display_name="X")]
    assert [a.username for a in usable_agents(agents, "u", set(), "", "dflt")] == ["dflt", "amy", "zed"]
