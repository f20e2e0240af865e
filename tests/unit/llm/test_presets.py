"""The instructions the llm adds to one-shot operations it knows (``presets``)."""

from __future__ import annotations

from services.llm.presets import EMOJI_SELECTION, with_preset
from services.llm.providers.base import CompletionRequest, Message, Role, TextPart

POST = Message(role=Role.USER, parts=(TextPart("We shipped the release!"),))


def test_emoji_selection_gets_its_instruction_first_and_a_short_output_limit() -> None:
    request = with_preset(CompletionRequest(messages=(POST,), operation=EMOJI_SELECTION))
    system, user = request.messages
    assert system.role == Role.SYSTEM and "emoji" in system.parts[0].text  # type: ignore[union-attr]
    assert user == POST and request.max_output_tokens == 16


def test_a_callers_own_system_message_and_other_operations_are_left_alone() -> None:
    own = CompletionRequest(messages=(Message(role=Role.SYSTEM, parts=(TextPart("Be brief."),)), POST))
    assert with_preset(own) == own
    own_emoji = CompletionRequest(messages=own.messages, operation=EMOJI_SELECTION)
    assert with_preset(own_emoji) == own_emoji
    chat = CompletionRequest(messages=(POST,), operation="bridge_agent")
    assert with_preset(chat) == chat
