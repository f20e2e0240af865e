"""Which posted events an agent answers (plugin-api.md 4.1)."""

from __future__ import annotations

import pytest

from services.common.errors import DomainError, InvalidInput, PermissionDenied
from services.common.mattermost import Channel, Post
from services.gateway.agent_directory import AgentBot
from services.gateway.conversations.triggers import ReminderCandidate, Trigger, classify, loop_in

HELPER = AgentBot(agent_id="a1", username="helper", bot_user_id="bot1")
OTHER = AgentBot(agent_id="a2", username="other", bot_user_id="bot2")
AGENTS = [HELPER, OTHER]


def post(message: str = "hi", user_id: str = "alice", root_id: str = "", **props: object) -> Post:
    return Post(id="p1", channel_id="c1", user_id=user_id, message=message, root_id=root_id, props=dict(props))


def channel(kind: str = "O", name: str = "town") -> dict[str, object]:
    return {"channel_type": kind, "channel_name": name, "team_id": "t1"}


def test_a_dm_with_an_agent_bot_starts_the_dm_flow() -> None:
    decision = classify(channel("D", "alice__bot1"), post(), AGENTS)
    assert isinstance(decision, Trigger) and decision.agent == HELPER and decision.is_direct_message


def test_a_mention_in_a_channel_starts_the_mention_flow_with_the_first_agent_named() -> None:
    decision = classify(channel(), post("@other and @helper, thoughts?"), AGENTS)
    assert isinstance(decision, Trigger) and decision.agent == OTHER and not decision.is_direct_message


def test_a_username_inside_another_word_is_not_a_mention() -> None:
    assert classify(channel(), post("mail @helpers or x@helper"), AGENTS) is None


def test_posts_by_agent_bots_are_ignored() -> None:
    assert classify(channel("D", "alice__bot1"), post(user_id="bot1"), AGENTS) is None


def test_webhook_posts_are_ignored() -> None:
    assert classify(channel(), post("@helper", from_webhook="true"), AGENTS) is None


def test_bot_posts_without_activate_ai_are_ignored_and_with_it_are_automated() -> None:
    assert classify(channel(), post("@helper", from_bot="true"), AGENTS) is None
    decision = classify(channel(), post("@helper", from_bot="true", activate_ai=True), AGENTS)
    assert isinstance(decision, Trigger) and decision.automated_invoker


def test_plugin_posts_without_activate_ai_are_ignored() -> None:
    assert classify(channel(), post("@helper", from_plugin="true"), AGENTS) is None


def test_shared_channel_remote_posts_and_wrangler_moves_are_ignored() -> None:
    data = {**channel(), "post": {"remote_id": "remote1"}}
    assert classify(data, post("@helper"), AGENTS) is None
    assert classify(channel(), post("@helper", wrangler="true"), AGENTS) is None


def test_a_thread_reply_without_a_mention_is_a_reminder_candidate() -> None:
    assert isinstance(classify(channel(), post("so?", root_id="r1"), AGENTS), ReminderCandidate)


def test_a_dm_between_two_people_is_ignored() -> None:
    assert classify(channel("D", "alice__bob"), post(), AGENTS) is None


# ---- looping an agent into a thread reply ------------------------------------------------------

TOWN = Channel(id="c1", type="O", team_id="t1")
# The thread so far: alice asked, the helper's bot answered.
THREAD = [Post(id="r1", channel_id="c1", user_id="alice"), Post(id="r2", channel_id="c1", user_id="bot1", root_id="r1")]


def test_looping_in_an_agent_answers_the_authors_thread_reply_in_the_mention_flow() -> None:
    trigger = loop_in(post("and for storage?", root_id="r1"), "alice", HELPER, TOWN, THREAD)
    assert trigger.agent == HELPER and trigger.team_id == "t1" and trigger.channel_type == "O"
    assert not trigger.is_direct_message and not trigger.automated_invoker


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ({"caller": "bob"}, PermissionDenied, "only the author"),
        ({"agent": None}, PermissionDenied, "cannot be looped in"),
        ({"root_id": ""}, InvalidInput, "only a reply in a thread"),
        ({"channel": Channel(id="c1", type="G")}, InvalidInput, "public or private channels"),
        ({"message": "@helper and for storage?"}, InvalidInput, "already mentions"),
        ({"thread": THREAD[:1]}, InvalidInput, "has not taken part"),
    ],
)
def test_looping_in_is_refused_when_a_rule_is_broken(
    case: dict[str, object], error: type[DomainError], words: str
) -> None:
    reply = post(str(case.get("message", "and for storage?")), root_id=str(case.get("root_id", "r1")))
    with pytest.raises(error, match=words):
        loop_in(
            reply,
            str(case.get("caller", "alice")),
            case.get("agent", HELPER),  # type: ignore[arg-type]
            case.get("channel", TOWN),  # type: ignore[arg-type]
            case.get("thread", THREAD),  # type: ignore[arg-type]
        )
