"""Decoding the OpenAI Responses API event stream into normalised events.

Wire notes: every event's JSON carries its ``type``; there is no ``[DONE]`` sentinel, the stream
ends with ``response.completed``, ``response.incomplete`` or ``response.failed`` (or a bare
``error`` event). Function calls open with ``response.output_item.added`` (``call_id``, ``name``),
grow through ``response.function_call_arguments.delta`` keyed by ``item_id`` and close with
``response.output_item.done`` carrying the full arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from services.llm.providers.base import (
    Annotation,
    Done,
    Event,
    ReasoningDelta,
    StopReason,
    TextDelta,
    ToolCallEvent,
    Usage,
)
from services.llm.providers.encoding import tool_call_from_raw
from services.llm.providers.errors import stream_error_event, truncated_stream
from services.llm.providers.sse import SSEEvent, event_json

INCOMPLETE_REASONS = {
    "max_output_tokens": StopReason.MAX_TOKENS,
    "content_filter": StopReason.CONTENT_FILTER,
}
# Tuples, not sets: ``type`` comes from the upstream's JSON and may be unhashable.
_REASONING_EVENTS = (
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.reasoning_summary_part.added",
)
_OUTPUT_ITEM_EVENTS = (
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.output_item.done",
)
_TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed", "error")


@dataclass
class _OpenCall:
    call_id: str
    name: str
    arguments: str = ""


def encode_reasoning_signature(item_id: str, encrypted_content: str) -> str:
    """The opaque ``signature`` we hand out for a reasoning item: enough to send it back."""
    return json.dumps({"id": item_id, "encrypted_content": encrypted_content}, separators=(",", ":"))


def decode_reasoning_signature(signature: str) -> tuple[str, str] | None:
    """(item id, encrypted content) from ``encode_reasoning_signature``; None for other providers'."""
    try:
        doc = json.loads(signature)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("encrypted_content"):
        return None
    return str(doc.get("id") or ""), str(doc["encrypted_content"])


class ResponsesStreamDecoder:
    """Responses API events → normalised events, ending with ``Usage`` (if sent) and ``Done``."""

    def __init__(self, provider_name: str) -> None:
        self.provider_name = provider_name
        self.done = False  # a terminal event was decoded (its ``Done`` already emitted)
        self._open_calls: dict[str, _OpenCall] = {}
        self._emitted_calls = 0

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Append the events one Responses event produces; raise ``ProviderError`` for a failure event."""
        payload = event_json(sse_event.data, self.provider_name)
        kind = payload.get("type") or sse_event.event
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = payload.get("delta")
            if delta:
                out.append(TextDelta(str(delta)))
        elif kind in _REASONING_EVENTS:
            _reasoning(kind, payload, out)
        elif kind in _OUTPUT_ITEM_EVENTS:
            self._output_item(kind, payload, out)
        elif kind == "response.output_text.annotation.added":
            _annotation(payload.get("annotation") or {}, out)
        elif kind in _TERMINAL_EVENTS:
            self._terminal(kind, payload, out)

    def finish(self) -> list[Event]:
        """Nothing once a terminal event was decoded; raise when the stream ended before one."""
        if self.done:
            return []
        raise truncated_stream(self.provider_name)

    def _output_item(self, kind: str, payload: dict[str, Any], out: list[Event]) -> None:
        """Output items: a function call opens with its item and grows by argument deltas; a finished
        call, or encrypted reasoning, is emitted when its item is done."""
        if kind == "response.output_item.added":
            item = payload.get("item") or {}
            if item.get("type") == "function_call":
                self._open_calls[str(item.get("id") or item.get("call_id"))] = _OpenCall(
                    call_id=str(item.get("call_id") or item.get("id") or ""),
                    name=str(item.get("name") or ""),
                    arguments=str(item.get("arguments") or ""),
                )
        elif kind == "response.function_call_arguments.delta":
            call = self._open_calls.get(str(payload.get("item_id")))
            if call is not None:
                call.arguments += str(payload.get("delta") or "")
        else:
            event = _finished_item(payload.get("item") or {}, self._open_calls)
            if event is not None:
                self._emitted_calls += isinstance(event, ToolCallEvent)
                out.append(event)

    def _terminal(self, kind: str, payload: dict[str, Any], out: list[Event]) -> None:
        """``Usage`` and ``Done`` for a finished response; raise for a failed one."""
        if kind == "response.failed":
            error = (payload.get("response") or {}).get("error") or {}
            raise stream_error_event(error, self.provider_name)
        if kind == "error":
            error = payload.get("error")
            raise stream_error_event(error if isinstance(error, dict) else payload, self.provider_name)
        response = payload.get("response") or {}
        if isinstance(response.get("usage"), dict):
            out.append(_usage(response["usage"]))
        out.append(Done(_stop_reason(kind, response, self._emitted_calls)))
        self.done = True


def _reasoning(kind: str, payload: dict[str, Any], out: list[Event]) -> None:
    if kind == "response.reasoning_summary_part.added":
        if int(payload.get("summary_index") or 0) > 0:
            out.append(ReasoningDelta("\n\n"))  # keep separate summary paragraphs apart
    elif payload.get("delta"):
        out.append(ReasoningDelta(str(payload["delta"])))


def _annotation(annotation: dict[str, Any], out: list[Event]) -> None:
    if annotation.get("type") == "url_citation" and annotation.get("url"):
        out.append(
            Annotation(
                url=str(annotation["url"]),
                title=str(annotation.get("title") or ""),
                start_index=int(annotation.get("start_index") or 0),
                end_index=int(annotation.get("end_index") or 0),
            )
        )


def _finished_item(item: dict[str, Any], open_calls: dict[str, _OpenCall]) -> Event | None:
    if item.get("type") == "function_call":
        opened = open_calls.pop(str(item.get("id") or item.get("call_id")), None)
        arguments = item.get("arguments")
        if not isinstance(arguments, str):
            arguments = opened.arguments if opened else ""
        call_id = str(item.get("call_id") or (opened.call_id if opened else ""))
        name = str(item.get("name") or (opened.name if opened else ""))
        return ToolCallEvent(tool_call_from_raw(call_id, name, arguments))
    if item.get("type") == "reasoning" and item.get("encrypted_content"):
        signature = encode_reasoning_signature(str(item.get("id") or ""), str(item["encrypted_content"]))
        return ReasoningDelta("", signature=signature)
    return None


def _stop_reason(kind: str, response: dict[str, Any], emitted_calls: int) -> StopReason:
    if kind == "response.incomplete":
        reason = str((response.get("incomplete_details") or {}).get("reason") or "")
        return INCOMPLETE_REASONS.get(reason, StopReason.MAX_TOKENS)
    return StopReason.TOOL_USE if emitted_calls else StopReason.END_TURN


def _usage(raw: dict[str, Any]) -> Usage:
    input_details = raw.get("input_tokens_details") or {}
    output_details = raw.get("output_tokens_details") or {}
    return Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cached_read_tokens=int(input_details.get("cached_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )
