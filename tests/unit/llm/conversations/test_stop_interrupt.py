"""``StopInterrupt``: a stop ends the wait for the model's next event at once, in the waiting
task itself, and a cancellation from anyone else is never taken for a stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.llm.conversations.interrupt import StopInterrupt, Stopped
from services.llm.providers.base import Event, TextDelta


async def _slow(first: list[str], closed: list[str]) -> AsyncIterator[Event]:
    try:
        for text in first:
            yield TextDelta(text)
        await asyncio.sleep(3600)  # a model that went quiet
        yield TextDelta("never")
    finally:
        closed.append("closed")


async def test_a_stop_ends_the_wait_for_the_next_event_and_closes_the_stream() -> None:
    stop, closed = asyncio.Event(), []
    stream = _slow(["a", "b"], closed)
    interrupt = StopInterrupt(stop)
    assert await interrupt.next(stream) == TextDelta("a")
    assert await interrupt.next(stream) == TextDelta("b")
    asyncio.get_running_loop().call_later(0.05, stop.set)
    async with asyncio.timeout(5):
        with pytest.raises(Stopped):
            await interrupt.next(stream)
    assert closed == ["closed"]  # the cancellation went through the stream: its socket is dropped
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # no cancellation left pending on the task
    interrupt.close()


async def test_a_stop_set_while_the_caller_holds_an_event_is_seen_at_the_next_call() -> None:
    stop, closed = asyncio.Event(), []
    stream = _slow(["a", "b"], closed)
    interrupt = StopInterrupt(stop)
    assert await interrupt.next(stream) == TextDelta("a")
    stop.set()
    await asyncio.sleep(0.01)  # the stop's watcher ran while no read was waiting
    with pytest.raises(Stopped):
        await interrupt.next(stream)
    await stream.aclose()
    interrupt.close()
    await asyncio.sleep(0)


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    stop, closed = asyncio.Event(), []

    async def reader() -> None:
        interrupt = StopInterrupt(stop)
        try:
            await interrupt.next(_slow([], closed))
        finally:
            interrupt.close()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_stop_and_an_outside_cancellation_together_stay_a_cancellation() -> None:
    stop, closed = asyncio.Event(), []
    outcome: list[str] = []

    async def reader() -> None:
        interrupt = StopInterrupt(stop)
        try:
            await interrupt.next(_slow([], closed))
        except Stopped:
            outcome.append("stopped")
        finally:
            interrupt.close()

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.sleep(0)  # the stop's watcher wakes and cancels the reader
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == []
