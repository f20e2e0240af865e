"""OpenAI Responses API (``POST {base}/responses``): type ``openai``, and ``openaicompatible`` /
``azure`` services with ``use_responses_api`` on.

Requests are stateless (``store: false``): the whole conversation is sent each turn, and reasoning
items travel back as encrypted content so reasoning models keep their chain across tool calls.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from services.llm.providers.base import (
    CompletionRequest,
    ImagePart,
    Message,
    ReasoningPart,
    Role,
    ServiceSettings,
    TextPart,
    ToolCall,
    ToolResult,
)
from services.llm.providers.encoding import image_data_url, output_token_limit, resolve_model
from services.llm.providers.openai_api import OpenAIAPIProvider
from services.llm.providers.openai_responses_stream import ResponsesStreamDecoder, decode_reasoning_signature
from services.llm.providers.sse_provider import SSERequest


class ResponsesProvider(OpenAIAPIProvider):
    """A service speaking the Responses API with ``stream: true``."""

    provider_name = "OpenAI"

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """``POST {base}/responses``; ``ResponsesStreamDecoder`` reads its events."""
        return SSERequest(
            f"{self.base_url()}/responses",
            self.auth_headers(),
            self.build_body(request, resolve_model(request, self.settings)),
            ResponsesStreamDecoder(self.provider_name),
            (self.settings.api_key,),
        )

    # ---- encoding ----------------------------------------------------------------------------

    def build_body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        """The JSON body for one streaming request."""
        body: dict[str, Any] = {
            "model": model,
            "input": encode_input(request.messages),
            "stream": True,
            "store": False,
            "max_output_tokens": output_token_limit(request, self.settings),
        }
        tools: list[dict[str, Any]] = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema,
                # Tool schemas come from MCP servers and admins; strict mode rejects most of them.
                "strict": False,
            }
            for t in request.tools
        ]
        if request.native_web_search:
            tools.append({"type": "web_search"})
        if tools:
            body["tools"] = tools
        if request.reasoning.enabled:
            body["reasoning"] = {"effort": request.reasoning.effort.value, "summary": "auto"}
            body["include"] = ["reasoning.encrypted_content"]
        if request.json_schema is not None:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": "response",
                    "schema": request.json_schema,
                    "strict": True,
                }
            }
        if self.settings.send_user_id and request.user_id:
            body["user"] = request.user_id
        return body


def encode_input(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Neutral messages → Responses input items, keeping the order of parts within a message."""
    items: list[dict[str, Any]] = []
    for message in messages:
        if message.role == Role.ASSISTANT:
            items.extend(_assistant_items(message))
            continue
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                content.append({"type": "input_text", "text": part.text})
            elif isinstance(part, ImagePart):
                content.append({"type": "input_image", "image_url": image_data_url(part)})
            elif isinstance(part, ToolResult):
                items.append({"type": "function_call_output", "call_id": part.tool_call_id, "output": part.content})
        if content:
            role = "system" if message.role == Role.SYSTEM else "user"
            items.append({"role": role, "content": content})
    return items


def _assistant_items(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    text: list[str] = []

    def flush_text() -> None:
        if text:
            items.append({"role": "assistant", "content": "".join(text)})
            text.clear()

    for part in message.parts:
        if isinstance(part, TextPart):
            text.append(part.text)
        elif isinstance(part, ReasoningPart):
            decoded = decode_reasoning_signature(part.signature) if part.signature else None
            if decoded is None:
                continue  # reasoning from another provider, or without encrypted content: not resendable
            flush_text()
            item_id, encrypted = decoded
            summary = [{"type": "summary_text", "text": part.text}] if part.text else []
            reasoning: dict[str, Any] = {
                "type": "reasoning",
                "summary": summary,
                "encrypted_content": encrypted,
            }
            if item_id:
                reasoning["id"] = item_id
            items.append(reasoning)
        elif isinstance(part, ToolCall):
            flush_text()
            items.append(
                {
                    "type": "function_call",
                    "call_id": part.id,
                    "name": part.name,
                    "arguments": part.raw_arguments,
                }
            )
        elif isinstance(part, ToolResult):
            flush_text()
            items.append({"type": "function_call_output", "call_id": part.tool_call_id, "output": part.content})
    flush_text()
    return items


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> ResponsesProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return ResponsesProvider(settings, session)
