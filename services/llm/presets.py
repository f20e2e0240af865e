"""Instructions the llm adds to a one-shot completion whose operation it knows, so that callers
send only the user's text and the wording stays here, beside the conversations' prompts
(``conversations/prompts.py``): the plugin's prompt templates for actions that are no
conversation: ``emoji_selection``, the emoji an agent reacts to a post with, and ``search``, the
answer to a semantic search over the results the caller sends.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from services.llm.providers.base import CompletionRequest, Message, Role, TextPart

EMOJI_SELECTION = "emoji_selection"
SEARCH = "search"


@dataclass(frozen=True)
class Preset:
    """The instruction and output limit of a known one-shot operation."""

    instruction: str
    # The output limit when the caller sets none.
    max_output_tokens: int


PRESETS = {
    # The plugin's emoji_select_system prompt, in substance: one emoji name, nothing else.
    EMOJI_SELECTION: Preset(
        "Choose the single emoji that best reacts to the user's message. Answer with its Mattermost "
        "short name only (for example thumbsup, tada, eyes), without colons or any other text.",
        max_output_tokens=16,
    ),
    # The plugin's search_system prompt, in substance; the caller sends the results and the question.
    SEARCH: Preset(
        "You are a helpful assistant in Mattermost, answering questions from message history. Use ONLY "
        "the messages in the <context> of the user's message. Answer directly and concisely; if the "
        "context does not hold the answer, say so and do not make anything up. Quote the messages you "
        "rely on and say who wrote them in which channel (for example: according to jane in Engineering).",
        max_output_tokens=1024,
    ),
}


def with_preset(request: CompletionRequest) -> CompletionRequest:
    """``request`` with its operation's instruction as the system message and its output limit,
    unless the caller sent a system message (or a limit) of its own."""
    preset = PRESETS.get(request.operation)
    if preset is None or any(m.role == Role.SYSTEM for m in request.messages):
        return request
    return dataclasses.replace(
        request,
        messages=(Message(role=Role.SYSTEM, parts=(TextPart(preset.instruction),)), *request.messages),
        max_output_tokens=request.max_output_tokens or preset.max_output_tokens,
    )
