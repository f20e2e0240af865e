"""Decoding a provider's SSE stream a socket read at a time, coalescing what arrived together.

When the service falls behind (many streams on one core), one socket read often holds several
tokens. Sending each as its own gRPC message multiplies the per-message cost exactly when it
hurts most, so adjacent text deltas of one read become one ``TextDelta`` (and likewise plain
reasoning deltas). Nothing waits for more input: a read holding one token yields it at once,
so time to first token and an idle stream's latency are untouched, and order and content are
exactly what the provider sent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from services.llm.providers.base import Event, ProviderError, ReasoningDelta, TextDelta
from services.llm.providers.sse import SSEEvent


class StreamDecoder(Protocol):
    """A provider's wire format, decoded one SSE event at a time."""

    done: bool  # the terminal event was seen: nothing after it is read

    def feed(self, sse_event: SSEEvent, out: list[Event]) -> None:
        """Append the events ``sse_event`` produces; raise ``ProviderError`` for an in-stream error."""
        ...

    def finish(self) -> list[Event]:
        """The closing events once the body ended (or ``done``); raise if the answer was cut short."""
        ...


def coalesce(events: list[Event]) -> list[Event]:
    """``events`` with adjacent text deltas merged, and adjacent reasoning deltas that carry no
    signature or redacted block (those must reach the caller verbatim); order kept."""
    if len(events) < 2:
        return events
    out: list[Event] = []
    for event in events:
        if out:
            last = out[-1]
            if type(event) is TextDelta and type(last) is TextDelta:
                out[-1] = TextDelta(last.text + event.text)
                continue
            if type(event) is ReasoningDelta and type(last) is ReasoningDelta and _plain(last) and _plain(event):
                out[-1] = ReasoningDelta(last.text + event.text)
                continue
        out.append(event)
    return out


def _plain(delta: ReasoningDelta) -> bool:
    return not delta.signature and not delta.redacted


async def decode_batches(
    batches: AsyncGenerator[list[SSEEvent], None], decoder: StreamDecoder
) -> AsyncGenerator[Event, None]:
    """Events of a stream of per-read SSE batches, coalesced per read, ending with ``finish()``.

    A failure in the middle of a read still delivers the events before it first: the consumer
    keeps the partial answer and the engine knows output has started (so it does not retry).
    ``batches`` is closed when this generator ends or is closed, so a consumer that stops early
    frees the upstream socket at once.
    """
    try:
        out: list[Event] = []
        async for batch in batches:
            try:
                for sse_event in batch:
                    decoder.feed(sse_event, out)
                    if decoder.done:
                        break
            except ProviderError:
                for event in coalesce(out):
                    yield event
                raise
            if out:
                ready, out = coalesce(out), []
                for event in ready:
                    yield event
            if decoder.done:
                break
        for event in decoder.finish():
            yield event
    finally:
        await batches.aclose()
