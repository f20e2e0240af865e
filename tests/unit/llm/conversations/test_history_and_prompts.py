"""Building the model's view of a conversation: thread + stored turns, prompts, blocks."""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.mattermost.models import Post
from services.llm.conversations.blocks import REDACTED_RESULT, approval_state, strip_for_reader
from services.llm.conversations.history import build_history
from services.llm.conversations.model import Turn, TurnRole
from services.llm.conversations.prompts import PromptContext, clean_title, current_time, system_prompt
from services.llm.providers.base import ImagePart, Role, TextPart, ToolCall, ToolResult

BOT, ME, OTHER = "bot", "me", "other"


def post(pid: str, user: str, message: str, at: int) -> Post:
    return Post(id=pid, channel_id="ch", user_id=user, message=message, create_at=at)


def turn(seq: int, role: TurnRole, content: list[dict], post_id: str | None = None) -> Turn:
    return Turn(f"t{seq}", "conv", post_id, role, content, seq)


def history(**kw: object) -> list:
    defaults: dict = {
        "bot_user_id": BOT,
        "requester_id": ME,
        "response_post_ids": [],
        "usernames": {OTHER: "olga"},
        "attachments": {},
        "is_direct_message": True,
    }
    return build_history(**{**defaults, **kw})


def test_an_answered_post_is_followed_by_its_stored_tool_rounds_instead_of_the_bot_post() -> None:
    posts = [post("p1", ME, "count widgets", 1), post("r1", BOT, "There are 4.", 2), post("p2", ME, "thanks", 3)]
    turns = [
        turn(1, TurnRole.USER, [{"type": "text", "text": "count widgets"}], "p1"),
        turn(
            2, TurnRole.ASSISTANT, [{"type": "tool_use", "id": "c", "name": "count", "input": {}, "status": "success"}]
        ),
        turn(3, TurnRole.TOOL_RESULT, [{"type": "tool_result", "tool_use_id": "c", "name": "count", "content": "4"}]),
        turn(4, TurnRole.ASSISTANT, [{"type": "text", "text": "There are 4."}], "r1"),
    ]
    messages = history(posts=posts, turns=turns, current_post_id="p2", response_post_ids=["r1"])
    assert [m.role for m in messages] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT, Role.USER]
    assert isinstance(messages[1].parts[0], ToolCall) and isinstance(messages[2].parts[0], ToolResult)
    assert messages[3].parts == (TextPart("There are 4."),)


def test_posts_after_the_current_one_are_left_out() -> None:
    posts = [post("p1", ME, "first", 1), post("p2", ME, "later", 2)]
    messages = history(posts=posts, turns=[], current_post_id="p1")
    assert [m.parts for m in messages] == [(TextPart("first"),)]


def test_in_channels_other_people_are_named_and_unshared_results_redacted() -> None:
    posts = [post("p0", OTHER, "ship it?", 1), post("p1", ME, "@bot summarise", 2)]
    turns = [
        turn(1, TurnRole.USER, [], "p1"),
        turn(
            2, TurnRole.TOOL_RESULT, [{"type": "tool_result", "tool_use_id": "c", "content": "secret", "shared": False}]
        ),
    ]
    messages = history(posts=posts, turns=turns, current_post_id="p1", is_direct_message=False)
    assert messages[0].parts == (TextPart("@olga: ship it?"),)
    assert messages[2].parts[0].content == REDACTED_RESULT


def test_images_are_attached_to_their_post() -> None:
    image = ImagePart("image/png", b"png")
    messages = history(posts=[post("p1", ME, "look", 1)], turns=[], current_post_id="p1", attachments={"p1": [image]})
    assert messages[0].parts == (TextPart("look"), image)


def test_an_unreadable_current_post_falls_back_to_the_request_message() -> None:
    messages = history(posts=[], turns=[], current_post_id="p9", current_message="hello")
    assert messages[0].parts == (TextPart("hello"),)


def test_the_system_prompt_names_agent_user_channel_and_instructions() -> None:
    ctx = PromptContext(
        bot_name="Helper",
        bot_username="helper",
        model="gpt-4o",
        custom_instructions="Always answer in haiku.",
        user_username="alice",
        user_timezone="Asia/Tokyo",
        channel_name="Town Square",
        team_name="Eng",
    )
    prompt = system_prompt(ctx, now=datetime(2026, 1, 1, 12, tzinfo=UTC))
    assert "@helper" in prompt and "Always answer in haiku." in prompt and "@alice" in prompt
    assert "Town Square" in prompt and "Eng" in prompt and "21:00:00 +0900" in prompt


def test_an_unknown_timezone_falls_back_to_utc() -> None:
    assert current_time("Mars/Olympus", datetime(2026, 1, 1, tzinfo=UTC)).endswith("+0000")


def test_titles_lose_quotes_and_extra_whitespace() -> None:
    assert clean_title('  "Widget  count"\n') == "Widget count"


def test_readers_other_than_the_owner_see_only_shared_tool_content() -> None:
    blocks = [
        {"type": "tool_use", "id": "a", "input": {"q": 1}, "shared": False},
        {"type": "tool_result", "tool_use_id": "a", "content": "x", "shared": True},
    ]
    stripped = strip_for_reader(blocks)
    assert "input" not in stripped[0] and stripped[1]["content"] == "x"


def test_approval_state_follows_the_tool_blocks() -> None:
    pending = turn(1, TurnRole.ASSISTANT, [{"type": "tool_use", "id": "a", "status": "pending"}])
    decided = turn(2, TurnRole.ASSISTANT, [{"type": "tool_use", "id": "a", "status": "accepted"}])
    assert approval_state(pending) == "call" and approval_state(decided) == "done"
    assert approval_state(turn(3, TurnRole.ASSISTANT, [{"type": "text", "text": "hi"}])) == ""
