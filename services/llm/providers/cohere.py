"""Cohere v2 Chat: streaming text, tool calls, citations and thinking.

``POST /v2/chat`` with ``stream: true`` answers server-sent events whose JSON carries a ``type``:
``message-start``, ``content-start/delta/end`` (text or thinking), ``tool-plan-delta``,
``tool-call-start/delta/end``, ``citation-start/end`` and ``message-end`` with the finish reason
and usage. Tool-call arguments arrive as JSON text in pieces and are parsed at ``tool-call-end``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import aiohttp

from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ProviderError,
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
from services.llm.providers.errors import truncated_stream
from services.llm.providers.http_stream import get_json
from services.llm.providers.sse import SSEEvent, event_json
from services.llm.providers.sse_provider import SSEProvider, SSERequest

PROVIDER_NAME = "Cohere"
DEFAULT_BASE_URL = "https://api.cohere.com"

_STOP_REASONS = {
    "COMPLETE": StopReason.END_TURN,
    "STOP_SEQUENCE": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    "TOOL_CALL": StopReason.TOOL_USE,
}


def build_request_body(request: CompletionRequest, settings: ServiceSettings) -> dict[str, Any]:
    """The v2 chat body for ``request``. Reasoning is left to the model: Cohere takes no budget
    on its non-reasoning models, and its reasoning models think by default."""
    model = resolve_model(request, settings)
    body: dict[str, Any] = {
        "model": model,
        "messages": to_cohere_messages(request.messages),
        "stream": True,
        "max_tokens": output_token_limit(request, settings),
    }
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.input_schema},
            }
            for t in request.tools
        ]
    if request.json_schema is not None:
        body["response_format"] = {"type": "json_object", "json_schema": request.json_schema}
    return body


def to_cohere_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """v2 messages: tool results become one ``tool`` message each; assistant tool calls ride along."""
    out: list[dict[str, Any]] = []
    for message in messages:
        texts = [p.text for p in message.parts if isinstance(p, TextPart) and p.text]
        if message.role is Role.SYSTEM:
            if texts:
                out.append({"role": "system", "content": "\n\n".join(texts)})
            continue
        results = [p for p in message.parts if isinstance(p, ToolResult)]
        out.extend({"role": "tool", "tool_call_id": r.tool_call_id, "content": r.content or " "} for r in results)
        if message.role is Role.ASSISTANT:
            calls = [p for p in message.parts if isinstance(p, ToolCall)]
            turn: dict[str, Any] = {"role": "assistant"}
            if texts:
                turn["content"] = "".join(texts)
            if calls:
                turn["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": json.dumps(c.arguments or {})},
                    }
                    for c in calls
                ]
            if len(turn) > 1:
                out.append(turn)
            continue
        content: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts]
        for part in message.parts:
            if isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": image_data_url(part)}})
        if content:
            out.append({"role": "user", "content": content})
    return out


class V2ChatStreamDecoder:
    """v2 chat stream events → normalised events (``coalesce.StreamDecoder``); the stream ends
    at ``message-end`` with ``Usage`` and ``Done``."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, str, list[str]]] = {}
        self.done = False

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Appends the events of one stream event; raises ``ProviderError`` when the model failed."""
        data = event_json(sse_event.data, PROVIDER_NAME)
        kind = data.get("type")
        index = int(data.get("index") or 0)
        message = (data.get("delta") or {}).get("message") or {}
        if kind == "content-delta":
            content = message.get("content") or {}
            if content.get("thinking"):
                out.append(ReasoningDelta(text=str(content["thinking"])))
            elif content.get("text"):
                out.append(TextDelta(str(content["text"])))
        elif kind == "tool-plan-delta" and message.get("tool_plan"):
            # The plan ("I will look up ...") is the model thinking aloud, not the answer.
            out.append(ReasoningDelta(text=str(message["tool_plan"])))
        elif kind == "tool-call-start":
            call = message.get("tool_calls") or {}
            function = call.get("function") or {}
            self._calls[index] = (
                str(call.get("id", "")),
                str(function.get("name", "")),
                [str(function.get("arguments") or "")],
            )
        elif kind == "tool-call-delta" and index in self._calls:
            function = (message.get("tool_calls") or {}).get("function") or {}
            self._calls[index][2].append(str(function.get("arguments") or ""))
        elif kind == "tool-call-end" and index in self._calls:
            call_id, name, parts = self._calls.pop(index)
            out.append(ToolCallEvent(tool_call_from_raw(call_id, name, "".join(parts))))
        elif kind == "citation-start":
            out.extend(_annotations(message.get("citations") or {}))
        elif kind == "message-end":
            out.extend(self._end(data.get("delta") or {}))

    def finish(self) -> list[Event]:
        """Nothing once ``message-end`` was seen; a body that ended before it was cut short."""
        if self.done:
            return []
        raise truncated_stream(PROVIDER_NAME)

    def _end(self, delta: dict[str, Any]) -> list[Event]:
        reason = str(delta.get("finish_reason") or "COMPLETE")
        if reason in ("ERROR", "TIMEOUT"):
            raise ProviderError(
                f"{PROVIDER_NAME} failed while answering ({reason.lower()}); try again",
                retryable=True,
                code=reason.lower(),
            )
        self.done = True
        usage = delta.get("usage") or {}
        tokens = usage.get("tokens") or usage.get("billed_units") or {}
        return [
            Usage(
                input_tokens=int(tokens.get("input_tokens") or 0),
                output_tokens=int(tokens.get("output_tokens") or 0),
            ),
            Done(_STOP_REASONS.get(reason, StopReason.END_TURN)),
        ]


def _annotations(citation: dict[str, Any]) -> list[Event]:
    """Citations whose sources carry a URL (web results from tools or documents)."""
    out: list[Event] = []
    for source in citation.get("sources") or []:
        fields = source.get("tool_output") or source.get("document") or {}
        if isinstance(fields, dict) and fields.get("url"):
            out.append(
                Annotation(
                    url=str(fields["url"]),
                    title=str(fields.get("title") or ""),
                    start_index=int(citation.get("start") or 0),
                    end_index=int(citation.get("end") or 0),
                )
            )
    return out


class CohereProvider(SSEProvider):
    """A configured Cohere service; one upstream attempt per ``stream`` call."""

    provider_name = PROVIDER_NAME

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(settings, session)
        self._base = (settings.api_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v2")

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """One v2 chat call; ``V2ChatStreamDecoder`` reads its events."""
        return SSERequest(
            f"{self._base}/v2/chat",
            self._headers(),
            build_request_body(request, self.settings),
            V2ChatStreamDecoder(),
            (self.settings.api_key,),
        )

    async def list_models(self) -> list[str]:
        """Chat-capable model names from ``GET /v1/models``, following its page tokens."""
        models: list[str] = []
        params = {"endpoint": "chat", "page_size": "1000"}
        while True:
            page = await get_json(
                self._session,
                f"{self._base}/v1/models?{urlencode(params)}",
                headers=self._headers(),
                provider_name=PROVIDER_NAME,
                secrets=(self.settings.api_key,),
            )
            models.extend(str(m["name"]) for m in page.get("models", []) if m.get("name"))
            if not page.get("next_page_token"):
                return models
            params["page_token"] = str(page["next_page_token"])


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> CohereProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return CohereProvider(settings, session)
