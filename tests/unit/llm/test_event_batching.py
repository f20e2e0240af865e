"""Batching a completion's events for clients that take several per message (batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.common.errors import ErrorClass, UpstreamUnavailable
from services.llm.batching import event_batches
from services.llm.providers.base import Done, Event, StopReason, StreamError, TextDelta, Usage

pytestmark = pytest.mark.asyncio


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


async def test_the_first_event_goes_out_alone_without_waiting_for_more() -> None:
    upstream = Upstream()
    batches = event_batches(upstream.events())
    upstream.send(TextDelta("Hel"))
    first = await asyncio.wait_for(anext(batches), 1)
    assert first == [TextDelta("Hel")]
    await batches.aclose()  # type: ignore[attr-defined]


async def test_events_ready_together_share_one_batch_in_order_with_done_last() -> None:
    upstream = Upstream()
    batches = event_batches(upstream.events())
    upstream.send(TextDelta("a"))
    assert await anext(batches) == [TextDelta("a")]
    upstream.send(TextDelta("b"), TextDelta("c"), Usage(3, 2), Done(StopReason.END_TURN))
    await settle()
    assert await anext(batches) == [TextDelta("b"), TextDelta("c"), Usage(3, 2), Done(StopReason.END_TURN)]
    assert await anext(batches, None) is None


async def test_done_is_flushed_at_once_and_nothing_after_it_is_read() -> None:
    upstream = Upstream()
    batches = event_batches(upstream.events())
    upstream.send(Done(StopReason.END_TURN))
    assert await asyncio.wait_for(anext(batches), 1) == [Done(StopReason.END_TURN)]
    assert await anext(batches, None) is None
    assert upstream.closed


async def test_an_error_event_and_done_arrive_with_the_text_before_them() -> None:
    upstream = Upstream()
    error = StreamError(ErrorClass.PROVIDER, "boom", retryable=True, code="server_error")
    upstream.send(TextDelta("x"), error, Done(StopReason.ERROR))
    await settle()
    got = [event async for batch in event_batches(upstream.events()) for event in batch]
    assert got == [TextDelta("x"), error, Done(StopReason.ERROR)]


async def test_a_batch_never_holds_more_than_the_cap_and_the_reader_stays_within_it() -> None:
    upstream = Upstream()
    batches = event_batches(upstream.events(), max_events=4)
    upstream.send(*(TextDelta(str(i)) for i in range(20)))
    first = await anext(batches)
    await settle()
    # The client holds its batch: the reader has queued at most the cap, plus one in hand.
    assert upstream.read <= len(first) + 4 + 1
    sizes = [len(first)]
    seen = list(first)
    upstream.send(Done(StopReason.END_TURN))
    async for batch in batches:
        sizes.append(len(batch))
        seen.extend(batch)
    assert max(sizes) <= 4
    assert seen == [*(TextDelta(str(i)) for i in range(20)), Done(StopReason.END_TURN)]


async def test_an_error_before_the_first_event_is_raised_to_the_consumer() -> None:
    upstream = Upstream()
    upstream.send(UpstreamUnavailable("provider down"))
    with pytest.raises(UpstreamUnavailable, match="provider down"):
        await anext(event_batches(upstream.events()))


async def test_closing_early_stops_reading_the_upstream() -> None:
    upstream = Upstream()
    batches = event_batches(upstream.events())
    upstream.send(TextDelta("a"))
    await anext(batches)
    await batches.aclose()  # type: ignore[attr-defined]
    assert upstream.closed
