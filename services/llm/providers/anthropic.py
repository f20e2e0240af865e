"""Anthropic Messages API: streaming, extended thinking, tools, vision, web search, JSON output.

Wire format: ``POST /v1/messages`` with ``stream: true`` answers server-sent events
(``message_start``, ``content_block_start/delta/stop``, ``message_delta``, ``message_stop``,
``ping``, ``error``). Thinking blocks carry a signature that must come back verbatim in later
turns, so reasoning is streamed out with its signature and replayed from ``ReasoningPart``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from services.common.errors import InvalidInput
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ReasoningDelta,
    ReasoningPart,
    ServiceSettings,
    StopReason,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    Usage,
)
from services.llm.providers.encoding import alternating_turns, output_token_limit, resolve_model, tool_call_from_raw
from services.llm.providers.errors import stream_error_event, truncated_stream
from services.llm.providers.http_stream import get_json
from services.llm.providers.sse import SSEEvent, event_json
from services.llm.providers.sse_provider import SSEProvider, SSERequest

PROVIDER_NAME = "Anthropic"
DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# The API refuses budgets under 1024; above 8192 the default would eat most answers' room.
MIN_THINKING_BUDGET = 1024
MAX_DEFAULT_THINKING_BUDGET = 8192
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}

_STOP_REASONS = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.END_TURN,
    "pause_turn": StopReason.END_TURN,
    "tool_use": StopReason.TOOL_USE,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "refusal": StopReason.CONTENT_FILTER,
}


def thinking_budget(request: CompletionRequest, max_tokens: int) -> tuple[int, int]:
    """(budget_tokens, max_tokens) for extended thinking.

    The budget is the request's, else a quarter of the output limit clamped to [1024, 8192]. The
    API wants it below ``max_tokens``: a budget that does not fit shrinks to ``max_tokens - 1``
    (the admin's output limit wins), and only when that would fall under the API's 1024 minimum
    does ``max_tokens`` grow instead.
    """
    budget = request.reasoning.budget_tokens or min(
        max(max_tokens // 4, MIN_THINKING_BUDGET), MAX_DEFAULT_THINKING_BUDGET
    )
    budget = max(min(budget, max_tokens - 1), MIN_THINKING_BUDGET)
    if budget >= max_tokens:
        max_tokens = budget + MIN_THINKING_BUDGET
    return budget, max_tokens


def build_request_body(request: CompletionRequest, settings: ServiceSettings) -> dict[str, Any]:
    """The Messages API body for ``request``; raises ``InvalidInput`` for unsupported combinations."""
    model = resolve_model(request, settings)
    if request.reasoning.enabled and request.json_schema is not None:
        # Anthropic cannot think while constrained to a JSON schema; refuse instead of silently
        # dropping one of the two.
        raise InvalidInput(
            "reasoning and structured output cannot be combined for Anthropic; disable one",
            field="json_schema",
        )
    system, messages = to_anthropic_messages(request.messages)
    max_tokens = output_token_limit(request, settings)
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if system:
        body["system"] = system
    if request.reasoning.enabled:
        budget, max_tokens = thinking_budget(request, max_tokens)
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    body["max_tokens"] = max_tokens
    tools: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in request.tools
    ]
    if request.native_web_search:
        tools.append(dict(WEB_SEARCH_TOOL))
    if tools:
        body["tools"] = tools
    if request.json_schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": request.json_schema}}
    if settings.send_user_id and request.user_id:
        body["metadata"] = {"user_id": request.user_id}
    return body


def to_anthropic_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, alternating turns) with tool results as user turns."""
    system, turns = alternating_turns(messages, _blocks)
    for turn in turns:
        # tool_result blocks must open a user turn.
        turn["content"].sort(key=lambda b: b["type"] != "tool_result")
    return system, turns


def _blocks(message: Message) -> list[dict[str, Any]]:
    return [b for b in map(_block, message.parts) if b is not None]


def _block(part: object) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        data = base64.b64encode(part.data).decode("ascii")
        return {"type": "image", "source": {"type": "base64", "media_type": part.mime_type, "data": data}}
    if isinstance(part, ReasoningPart):
        if part.redacted:
            return {"type": "redacted_thinking", "data": part.text}
        # Unsigned thinking (e.g. from another provider) would be rejected; drop it.
        if not part.signature:
            return None
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    if isinstance(part, ToolCall):
        args = part.arguments if part.arguments is not None else {}
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": args}
    if isinstance(part, ToolResult):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": part.tool_call_id,
            "content": part.content,
        }
        if part.is_error:
            block["is_error"] = True
        return block
    return None


@dataclass
class _Block:
    kind: str
    start: int = 0  # offset of a text block in the whole answer, for citation ranges
    tool_id: str = ""
    tool_name: str = ""
    json_parts: list[str] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)


class MessageStreamDecoder:
    """Messages API stream events → normalised events (``coalesce.StreamDecoder``); the stream
    ends at ``message_stop`` with ``Usage`` and ``Done``."""

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._text_len = 0
        self._usage: dict[str, int] = {}
        self._stop = StopReason.END_TURN
        self.done = False

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Appends the events of one stream event; raises ``ProviderError`` for an ``error`` event."""
        data = event_json(sse_event.data, PROVIDER_NAME)
        kind = str(data.get("type") or sse_event.event)
        if kind == "content_block_delta":
            self._delta(int(data.get("index", 0)), data.get("delta", {}), out)
        elif kind == "content_block_start":
            self._start(int(data.get("index", 0)), data.get("content_block", {}), out)
        elif kind == "content_block_stop":
            self._stop_block(int(data.get("index", 0)), out)
        elif kind == "message_start":
            self._usage.update(_ints(data.get("message", {}).get("usage", {})))
        elif kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self._stop = _STOP_REASONS.get(reason, StopReason.END_TURN)
            self._usage.update(_ints(data.get("usage") or {}))
        elif kind == "message_stop":
            self.done = True
            u = self._usage
            out.append(
                Usage(
                    input_tokens=u.get("input_tokens", 0) + u.get("cache_creation_input_tokens", 0),
                    output_tokens=u.get("output_tokens", 0),
                    cached_read_tokens=u.get("cache_read_input_tokens", 0),
                )
            )
            out.append(Done(self._stop))
        elif kind == "error":
            raise stream_error_event(data.get("error") or {}, PROVIDER_NAME)
        # else: ping, and event types added after this code was written

    def finish(self) -> list[Event]:
        """Nothing once ``message_stop`` was seen; a body that ended before it was cut short."""
        if self.done:
            return []
        raise truncated_stream(PROVIDER_NAME)

    def _start(self, index: int, block: dict[str, Any], out: list[Event]) -> None:
        kind = str(block.get("type", ""))
        state = _Block(kind=kind, start=self._text_len)
        self._blocks[index] = state
        if kind == "tool_use":
            state.tool_id, state.tool_name = str(block.get("id", "")), str(block.get("name", ""))
        elif kind == "redacted_thinking":
            out.append(ReasoningDelta(text=str(block.get("data", "")), redacted=True))
        elif kind == "text":
            state.citations.extend(block.get("citations") or [])
            if block.get("text"):
                self._text(str(block["text"]), out)
        elif kind == "thinking" and block.get("thinking"):
            out.append(ReasoningDelta(text=str(block["thinking"])))

    def _delta(self, index: int, delta: dict[str, Any], out: list[Event]) -> None:
        state = self._blocks.setdefault(index, _Block(kind="text", start=self._text_len))
        kind = delta.get("type")
        if kind == "text_delta":
            self._text(str(delta.get("text", "")), out)
        elif kind == "thinking_delta":
            out.append(ReasoningDelta(text=str(delta.get("thinking", ""))))
        elif kind == "signature_delta":
            out.append(ReasoningDelta(text="", signature=str(delta.get("signature", ""))))
        elif kind == "input_json_delta":
            state.json_parts.append(str(delta.get("partial_json", "")))
        elif kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            state.citations.append(delta["citation"])

    def _stop_block(self, index: int, out: list[Event]) -> None:
        state = self._blocks.pop(index, None)
        if state is None:
            return
        if state.kind == "tool_use":
            out.append(ToolCallEvent(tool_call_from_raw(state.tool_id, state.tool_name, "".join(state.json_parts))))
            return
        # server_tool_use (web search) runs at Anthropic: its input is not ours to execute.
        out.extend(
            Annotation(
                url=str(c["url"]),
                title=str(c.get("title") or ""),
                start_index=state.start,
                end_index=self._text_len,
            )
            for c in state.citations
            if c.get("url")
        )

    def _text(self, text: str, out: list[Event]) -> None:
        if text:
            self._text_len += len(text)
            out.append(TextDelta(text))


def _ints(values: dict[str, Any]) -> dict[str, int]:
    return {k: int(v) for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)}


class AnthropicProvider(SSEProvider):
    """A configured Anthropic service; one upstream attempt per ``stream`` call."""

    provider_name = PROVIDER_NAME

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(settings, session)
        self._base = (settings.api_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")

    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.settings.api_key,
            "anthropic-version": API_VERSION,
            "content-type": "application/json",
            "accept": "text/event-stream",
        }

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """One Messages API call; ``MessageStreamDecoder`` reads its events."""
        return SSERequest(
            f"{self._base}/v1/messages",
            self._headers(),
            build_request_body(request, self.settings),
            MessageStreamDecoder(),
            (self.settings.api_key,),
        )

    async def list_models(self) -> list[str]:
        """Model ids from ``GET /v1/models``, following its cursor pages."""
        models: list[str] = []
        params: dict[str, str] = {"limit": "1000"}
        while True:
            page = await get_json(
                self._session,
                f"{self._base}/v1/models?{urlencode(params)}",
                headers=self._headers(),
                provider_name=PROVIDER_NAME,
                secrets=(self.settings.api_key,),
            )
            models.extend(str(m["id"]) for m in page.get("data", []) if m.get("id"))
            if not page.get("has_more") or not page.get("last_id"):
                return models
            params["after_id"] = str(page["last_id"])


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> AnthropicProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return AnthropicProvider(settings, session)
