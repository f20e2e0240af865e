"""Small conversions every provider needs between the neutral request and a wire body."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from services.common.errors import InvalidInput
from services.llm.providers.base import (
    CompletionRequest,
    ImagePart,
    Message,
    Role,
    ServiceSettings,
    TextPart,
    ToolCall,
)

DEFAULT_OUTPUT_TOKENS = 8192  # ServiceSettings.output_token_limit 0 means this


def resolve_model(request: CompletionRequest, settings: ServiceSettings) -> str:
    """The request's model, else the service default; a request naming neither is the caller's fault."""
    model = request.model or settings.default_model
    if not model:
        raise InvalidInput(
            f"no model given and service {settings.name or settings.id} has no default model", field="model"
        )
    return model


def output_token_limit(request: CompletionRequest, settings: ServiceSettings) -> int:
    """Max output tokens: the request's, else the service's, else the house default."""
    return request.max_output_tokens or settings.output_token_limit or DEFAULT_OUTPUT_TOKENS


def image_data_url(image: ImagePart) -> str:
    """An inline ``data:`` URL; images never leave as links the provider would have to fetch."""
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode('ascii')}"


def tool_call_from_raw(call_id: str, name: str, raw_arguments: str) -> ToolCall:
    """A ``ToolCall`` whose ``valid`` says whether the model's arguments are a JSON object.

    Models do emit truncated or non-object arguments; the conversation loop reports that back to
    the model instead of crashing, so this never raises.
    """
    text = raw_arguments.strip()
    if not text:
        return ToolCall(id=call_id, name=name, raw_arguments=raw_arguments, arguments={}, valid=True)
    try:
        parsed = json.loads(text)
    except ValueError:
        return ToolCall(id=call_id, name=name, raw_arguments=raw_arguments, arguments=None, valid=False)
    if not isinstance(parsed, dict):
        return ToolCall(id=call_id, name=name, raw_arguments=raw_arguments, arguments=None, valid=False)
    return ToolCall(id=call_id, name=name, raw_arguments=raw_arguments, arguments=parsed, valid=True)


def alternating_turns(
    messages: tuple[Message, ...],
    encode: Callable[[Message], list[dict[str, Any]]],
    *,
    assistant_role: str = "assistant",
    content_key: str = "content",
) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, turns) for APIs that take the system text apart and want strictly
    alternating user/assistant turns (Anthropic, Bedrock Converse, Gemini).

    ``encode`` gives a message's wire blocks; a message without any is left out. Tool results
    travel in user turns, and neighbours of one role are merged: N tool results after one
    assistant turn become one user turn.
    """
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role is Role.SYSTEM:
            system.extend(p.text for p in message.parts if isinstance(p, TextPart) and p.text)
            continue
        blocks = encode(message)
        if not blocks:
            continue
        role = assistant_role if message.role is Role.ASSISTANT else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1][content_key].extend(blocks)
        else:
            turns.append({"role": role, content_key: blocks})
    return "\n\n".join(system), turns
