"""OpenAI Chat Completions streaming: ``openaicompatible`` services, and the base of Azure and Mistral.

Wire notes: tool calls arrive as partial deltas keyed by ``index`` (id and name in the first one,
``arguments`` split across many); usage comes in a final chunk with empty ``choices`` when
``stream_options.include_usage`` is set; the stream ends with ``data: [DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ReasoningDelta,
    Role,
    ServiceSettings,
    StopReason,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    Usage,
)
from services.llm.providers.encoding import (
    image_data_url,
    output_token_limit,
    resolve_model,
    tool_call_from_raw,
)
from services.llm.providers.errors import stream_error_event, truncated_stream
from services.llm.providers.openai_api import OpenAIAPIProvider
from services.llm.providers.sse import SSEEvent, event_json
from services.llm.providers.sse_provider import SSERequest

FINISH_REASONS = {
    "stop": StopReason.END_TURN,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "length": StopReason.MAX_TOKENS,
    "model_length": StopReason.MAX_TOKENS,  # Mistral: the context window, not max_tokens, ran out
    "content_filter": StopReason.CONTENT_FILTER,
    "error": StopReason.ERROR,
}


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class ChatCompletionsProvider(OpenAIAPIProvider):
    """A service speaking ``POST {base}/chat/completions`` with ``stream: true``.

    Subclasses adjust the URL, auth headers and body through the small hooks below; decoding the
    stream is shared.
    """

    provider_name = "the OpenAI-compatible service"
    max_tokens_field = "max_tokens"  # widest support among compatible servers
    include_usage_option = True
    send_user_field = True

    # ---- hooks -------------------------------------------------------------------------------

    def completions_url(self, model: str) -> str:
        """Where one completion for ``model`` is posted."""
        return f"{self.base_url()}/chat/completions"

    def image_content(self, image: ImagePart) -> dict[str, Any]:
        """An image as a user message's content item."""
        return {"type": "image_url", "image_url": {"url": image_data_url(image)}}

    def tool_result_message(self, result: ToolResult) -> dict[str, Any]:
        """A tool's result as the ``tool`` message answering its call."""
        return {"role": "tool", "tool_call_id": result.tool_call_id, "content": result.content}

    def build_body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        """The JSON body for one streaming request."""
        body: dict[str, Any] = {
            "model": model,
            "messages": self.encode_messages(request.messages),
            "stream": True,
            self.max_tokens_field: output_token_limit(request, self.settings),
        }
        if self.include_usage_option:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
                }
                for t in request.tools
            ]
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.json_schema, "strict": True},
            }
        if request.reasoning.enabled:
            body["reasoning_effort"] = request.reasoning.effort.value
        if self.send_user_field and self.settings.send_user_id and request.user_id:
            body["user"] = request.user_id
        return body

    # ---- the request ---------------------------------------------------------------------------

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """``POST {base}/chat/completions``; ``ChatStreamDecoder`` reads its events."""
        model = resolve_model(request, self.settings)
        return SSERequest(
            self.completions_url(model),
            self.auth_headers(),
            self.build_body(request, model),
            ChatStreamDecoder(self.provider_name, self.content_parts),
            (self.settings.api_key,),
        )

    # ---- encoding ----------------------------------------------------------------------------

    def encode_messages(self, messages: tuple[Message, ...]) -> list[dict[str, Any]]:
        """Neutral messages → chat messages; tool results become separate ``tool`` messages."""
        out: list[dict[str, Any]] = []
        for message in messages:
            texts = [p.text for p in message.parts if isinstance(p, TextPart)]
            images = [p for p in message.parts if isinstance(p, ImagePart)]
            calls = [p for p in message.parts if isinstance(p, ToolCall)]
            results = [p for p in message.parts if isinstance(p, ToolResult)]
            if message.role == Role.SYSTEM:
                out.append({"role": "system", "content": "\n\n".join(texts)})
            elif message.role == Role.ASSISTANT:
                # Reasoning parts are dropped: chat completions has no way to send them back.
                entry: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
                if calls:
                    entry["tool_calls"] = [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.raw_arguments},
                        }
                        for c in calls
                    ]
                if entry["content"] is not None or calls:
                    out.append(entry)
            elif texts or images:
                if images:
                    content: Any = [{"type": "text", "text": t} for t in texts]
                    content += [self.image_content(i) for i in images]
                else:
                    content = "\n\n".join(texts)
                out.append({"role": "user", "content": content})
            out.extend(self.tool_result_message(r) for r in results)
        return out

    def content_parts(self, parts: list[Any]) -> list[Event]:
        """Events for a ``content`` sent as a list of typed chunks (plain OpenAI never does)."""
        events: list[Event] = []
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "text" and part.get("text"):
                events.append(TextDelta(str(part["text"])))
        return events


class ChatStreamDecoder:
    """Chat-completion chunks → normalised events, ending with ``Usage`` (if sent) and ``Done``.

    Raises ``ProviderError`` for an in-stream error object, a malformed chunk, or a stream that
    ends before both a ``finish_reason`` and ``[DONE]`` were seen.
    """

    def __init__(self, provider_name: str, content_parts: Callable[[list[Any]], list[Event]] | None = None) -> None:
        self.provider_name = provider_name
        self.content_parts = content_parts
        self.done = False  # ``[DONE]`` seen
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._usage: Usage | None = None

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Append the events one chunk produces; raise ``ProviderError`` for an in-stream error."""
        data = sse_event.data
        if data == "[DONE]" or data.strip() == "[DONE]":
            self.done = True
            return
        chunk = event_json(data, self.provider_name)
        if chunk.get("error"):
            error = chunk["error"]
            raise stream_error_event(error if isinstance(error, dict) else {"message": str(error)}, self.provider_name)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = _usage(usage)
        for choice in chunk.get("choices") or ():
            # Only the first choice is the answer (no request asks for ``n`` > 1).
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, out)

    def _choice(self, choice: dict[str, Any], out: list[Event]) -> None:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(reasoning))
        content = delta.get("content")
        if isinstance(content, str):
            if content:
                out.append(TextDelta(content))
        elif isinstance(content, list) and self.content_parts is not None:
            out.extend(self.content_parts(content))
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            for position, fragment in enumerate(tool_calls):
                _merge_tool_fragment(self._calls, position, fragment)
        if choice.get("finish_reason"):
            self._finish = str(choice["finish_reason"])

    def finish(self) -> list[Event]:
        """The tool calls, ``Usage`` (if sent) and ``Done`` once the body ended; raise if it was cut short."""
        if self._finish is None and not self.done:
            raise truncated_stream(self.provider_name)
        out: list[Event] = []
        calls = self._calls
        for index in sorted(calls):
            partial = calls[index]
            call_id = partial.id or f"call_{index}"
            out.append(ToolCallEvent(tool_call_from_raw(call_id, partial.name, partial.arguments)))
        if self._usage is not None:
            out.append(self._usage)
        stop = FINISH_REASONS.get(self._finish or "stop", StopReason.END_TURN)
        if calls and stop == StopReason.END_TURN:
            stop = StopReason.TOOL_USE  # some compatible servers say "stop" after tool calls
        out.append(Done(stop))
        return out


def _merge_tool_fragment(calls: dict[int, _PartialCall], position: int, fragment: Any) -> None:
    if not isinstance(fragment, dict):
        return
    index = fragment.get("index")
    if not isinstance(index, int):
        # Servers that send whole calls without an index: match by id, else append.
        index = next((i for i, c in calls.items() if fragment.get("id") and c.id == fragment.get("id")), None)
        if index is None:
            index = max(calls, default=-1) + 1 if calls else position
    partial = calls.setdefault(index, _PartialCall())
    if fragment.get("id"):
        partial.id = str(fragment["id"])
    function = fragment.get("function") or {}
    if function.get("name"):
        partial.name = str(function["name"])
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        partial.arguments += arguments
    elif isinstance(arguments, dict):
        partial.arguments += json.dumps(arguments)


def _usage(raw: dict[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("prompt_tokens") or 0),
        output_tokens=int(raw.get("completion_tokens") or 0),
        cached_read_tokens=int(prompt_details.get("cached_tokens") or 0),
        reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
    )


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> ChatCompletionsProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return ChatCompletionsProvider(settings, session)


__all__ = ["FINISH_REASONS", "ChatCompletionsProvider", "ChatStreamDecoder", "create"]
