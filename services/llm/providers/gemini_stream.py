"""Decoding Gemini's ``streamGenerateContent?alt=sse`` answers (Gemini API and Vertex AI alike).

Each SSE ``data`` is a ``GenerateContentResponse``: parts of ``candidates[0].content`` (text,
``thought`` summaries, ``functionCall``), and on the last chunk ``finishReason``,
``usageMetadata`` and, with Google Search grounding, ``groundingMetadata``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.llm.providers.base import (
    Annotation,
    Done,
    Event,
    ProviderError,
    ReasoningDelta,
    StopReason,
    TextDelta,
    ToolCallEvent,
    Usage,
)
from services.llm.providers.encoding import tool_call_from_raw
from services.llm.providers.errors import truncated_stream
from services.llm.providers.sse import SSEEvent

# Ids we invent for calls Gemini sent without one; they are never echoed back upstream.
LOCAL_CALL_ID_PREFIX = "gemini_call_"

_FINISH_REASONS = {
    "STOP": StopReason.END_TURN,
    "MAX_TOKENS": StopReason.MAX_TOKENS,
    "SAFETY": StopReason.CONTENT_FILTER,
    "RECITATION": StopReason.CONTENT_FILTER,
    "BLOCKLIST": StopReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": StopReason.CONTENT_FILTER,
    "SPII": StopReason.CONTENT_FILTER,
    "IMAGE_SAFETY": StopReason.CONTENT_FILTER,
}


class GenerateContentDecoder:
    """``GenerateContentResponse`` chunks → normalised events (``coalesce.StreamDecoder``)."""

    def __init__(self, provider_name: str) -> None:
        self.provider_name = provider_name
        self.done = False  # never set: there is no terminal event, the stream ends with the body
        self._text: list[str] = []
        self._finish_reason = ""
        self._saw_tool_call = False
        self._usage: dict[str, Any] = {}
        self._grounding: dict[str, Any] = {}

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Appends the events of one chunk; raises ``ProviderError`` for an error object in the stream."""
        chunk = parse_chunk(sse_event.data, self.provider_name)
        if isinstance(chunk.get("error"), dict):
            raise _stream_error(chunk["error"], self.provider_name)
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = chunk["usageMetadata"]
        feedback = chunk.get("promptFeedback") or {}
        if feedback.get("blockReason"):
            self._finish_reason = "SAFETY"
        candidates = chunk.get("candidates") or []
        if not candidates:
            return
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or []:
            self._part_events(part, out)
        if isinstance(candidate.get("groundingMetadata"), dict):
            self._grounding = candidate["groundingMetadata"]
        if candidate.get("finishReason"):
            self._finish_reason = str(candidate["finishReason"])

    def _part_events(self, part: dict[str, Any], out: list[Event]) -> None:
        signature = str(part.get("thoughtSignature") or "")
        if part.get("thought"):
            out.append(ReasoningDelta(str(part.get("text") or ""), signature=signature))
            return
        if signature:
            out.append(ReasoningDelta("", signature=signature))
        if isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            call_id = str(call.get("id") or f"{LOCAL_CALL_ID_PREFIX}{uuid.uuid4().hex[:16]}")
            raw = json.dumps(call.get("args") or {})
            out.append(ToolCallEvent(tool_call_from_raw(call_id, str(call.get("name") or ""), raw)))
            self._saw_tool_call = True
        elif part.get("text"):
            self._text.append(str(part["text"]))
            out.append(TextDelta(str(part["text"])))

    def finish(self) -> list[Event]:
        """Citations, usage and ``Done`` once the stream ended; raises if it ended early."""
        if self._finish_reason == "MALFORMED_FUNCTION_CALL":
            raise ProviderError(
                f"{self.provider_name} produced a malformed tool call; try again",
                retryable=True,
                code="malformed_function_call",
            )
        if not self._finish_reason:
            raise truncated_stream(self.provider_name)
        events: list[Event] = list(grounding_annotations(self._grounding, "".join(self._text)))
        if self._usage:
            thoughts = int(self._usage.get("thoughtsTokenCount") or 0)
            events.append(
                Usage(
                    input_tokens=int(self._usage.get("promptTokenCount") or 0),
                    output_tokens=int(self._usage.get("candidatesTokenCount") or 0) + thoughts,
                    cached_read_tokens=int(self._usage.get("cachedContentTokenCount") or 0),
                    reasoning_tokens=thoughts,
                )
            )
        stop = _FINISH_REASONS.get(self._finish_reason, StopReason.END_TURN)
        if stop is StopReason.END_TURN and self._saw_tool_call:
            stop = StopReason.TOOL_USE
        events.append(Done(stop))
        return events


def grounding_annotations(grounding: dict[str, Any], text: str) -> list[Annotation]:
    """One ``Annotation`` per cited source of each grounded segment, then uncited sources.

    Gemini's segment offsets count UTF-8 bytes; annotations count characters of the answer.
    """
    sources = [c.get("web") or {} for c in grounding.get("groundingChunks") or []]
    encoded = text.encode("utf-8")
    out: list[Annotation] = []
    cited: set[int] = set()
    for support in grounding.get("groundingSupports") or []:
        segment = support.get("segment") or {}
        start = len(encoded[: int(segment.get("startIndex") or 0)].decode("utf-8", errors="ignore"))
        end = len(encoded[: int(segment.get("endIndex") or 0)].decode("utf-8", errors="ignore"))
        for index in support.get("groundingChunkIndices") or []:
            if 0 <= index < len(sources) and sources[index].get("uri"):
                cited.add(index)
                source = sources[index]
                out.append(Annotation(str(source["uri"]), str(source.get("title") or ""), start, end))
    for index, source in enumerate(sources):
        if index not in cited and source.get("uri"):
            out.append(Annotation(str(source["uri"]), str(source.get("title") or "")))
    return out


def _stream_error(error: dict[str, Any], provider_name: str) -> ProviderError:
    code = int(error.get("code") or 0) if str(error.get("code") or "").isdigit() else 0
    status = str(error.get("status") or "")
    message = str(error.get("message") or "")[:500]
    return ProviderError(
        f"{provider_name} failed while answering: {message}" if message else f"{provider_name} failed",
        status=code,
        retryable=code in (429, 500, 502, 503, 504) or status in ("UNAVAILABLE", "INTERNAL"),
        code=status or "stream_error",
    )


def parse_chunk(data: str, provider_name: str) -> dict[str, Any]:
    """One SSE ``data`` payload as a JSON object."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]
    if not isinstance(doc, dict):
        raise ProviderError(
            f"{provider_name} sent an event that is not a JSON object", retryable=True, code="malformed_event"
        )
    return doc
