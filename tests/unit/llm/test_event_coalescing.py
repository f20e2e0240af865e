"""Coalescing a completion's events into StreamComplete messages (coalescing.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.common.errors import ErrorClass, UpstreamUnavailable
from services.llm.coalescing import coalesced
from services.llm.providers.base import Done, Event, StopReason, StreamError, TextDelta, Usage

pytestmark = pytest.mark.asyncio

# Longer than any test runs: whatever a test sees sent early was not sent by the window's end.
HOUR = 3600.0


class Upstream:
    """An event stream the test releases an event at a time, recording how far it was read."""

    def __init__(self) -> None:
        self.pending: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self.read = 0
        self.closed = False

    def send(self, *events: Event | BaseException) -> None:
        for event in events:
            self.pending.put_nowait(event)

    async def events(self) -> AsyncIterator[Event]:
        try:
            while True:
                item = await self.pending.get()
                if isinstance(item, BaseException):
                    raise item
                self.read += 1
                yield item
                if isinstance(item, Done):
                    return
        finally:
            self.closed = True


async def settle() -> None:
    """Let the reader task take everything already released (a bounded number of loop turns)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_first_event_goes_out_at_once_whatever_the_window() -> None:
    upstream = Upstream()
    batches = coalesced(upstream.events(), window=HOUR)
    upstream.send(TextDelta("Hel"))
    first = await asyncio.wait_for(anext(batches), 1)
    assert first == [TextDelta("Hel")]
    await batches.aclose()  # type: ignore[attr-defined]


async def test_after_the_first_event_text_is_held_for_the_window_and_joined() -> None:
    upstream = Upstream()
    batches = coalesced(upstream.events(), window=HOUR)
    upstream.send(TextDelta("a"))
    assert await anext(batches) == [TextDelta("a")]
    upstream.send(TextDelta("b"), TextDelta("c"))
    second = asyncio.ensure_future(anext(batches))
    await settle()
    assert not second.done()  # within the window: held
    upstream.send(Usage(3, 2), Done(StopReason.END_TURN))
    # Done is never held back: it flushes what waited, the deltas joined into one.
    assert await asyncio.wait_for(second, 1) == [TextDelta("bc"), Usage(3, 2), Done(StopReason.END_TURN)]
    assert await anext(batches, None) is None
    assert upstream.closed


async def test_without_a_window_what_is_ready_together_goes_together() -> None:
    upstream = Upstream()
    batches = coalesced(upstream.events(), window=0)
    upstream.send(TextDelta("a"))
    assert await anext(batches) == [TextDelta("a")]
    upstream.send(TextDelta("b"))
    assert await asyncio.wait_for(anext(batches), 1) == [TextDelta("b")]
    upstream.send(TextDelta("c"), TextDelta("d"), Done(StopReason.END_TURN))
    await settle()
    assert await anext(batches) == [TextDelta("cd"), Done(StopReason.END_TURN)]
    assert await anext(batches, None) is None


async def test_an_error_event_and_done_arrive_with_the_text_before_them() -> None:
    upstream = Upstream()
    error = StreamError(ErrorClass.PROVIDER, "boom", retryable=True, code="server_error")
    upstream.send(TextDelta("x"), TextDelta("y"), error, Done(StopReason.ERROR))
    await settle()
    got = [event async for batch in coalesced(upstream.events(), window=HOUR) for event in batch]
    assert got == [TextDelta("xy"), error, Done(StopReason.ERROR)]


async def test_a_full_message_goes_before_the_window_ends_and_the_reader_stays_within_the_cap() -> None:
    upstream = Upstream()
    error = StreamError(ErrorClass.PROVIDER, "boom", retryable=True, code="server_error")
    batches = coalesced(upstream.events(), window=HOUR, max_events=4)
    upstream.send(TextDelta("first"))
    assert await anext(batches) == [TextDelta("first")]
    # Errors are not joined, so each is an event of its own towards the cap.
    upstream.send(*([error] * 20))
    await settle()
    # Nobody took the full list: the reader stopped at the cap (plus none in hand).
    assert upstream.read == 1 + 4
    seen: list[Event] = []
    for _ in range(5):
        batch = await asyncio.wait_for(anext(batches), 1)
        assert len(batch) == 4
        seen += batch
    assert seen == [error] * 20
    await batches.aclose()  # type: ignore[attr-defined]


async def test_an_error_before_the_first_event_is_raised_to_the_consumer() -> None:
    upstream = Upstream()
    upstream.send(UpstreamUnavailable("provider down"))
    with pytest.raises(UpstreamUnavailable, match="provider down"):
        await anext(coalesced(upstream.events(), window=HOUR))


async def test_an_error_after_events_is_raised_once_they_are_sent() -> None:
    upstream = Upstream()
    upstream.send(TextDelta("a"), TextDelta("b"), UpstreamUnavailable("provider down"))
    await settle()
    batches = coalesced(upstream.events(), window=HOUR)
    assert await anext(batches) == [TextDelta("ab")]
    with pytest.raises(UpstreamUnavailable, match="provider down"):
        await anext(batches)


async def test_closing_early_stops_reading_the_upstream() -> None:
    upstream = Upstream()
    batches = coalesced(upstream.events(), window=HOUR)
    upstream.send(TextDelta("a"))
    await anext(batches)
    await batches.aclose()  # type: ignore[attr-defined]
    assert upstream.closed
