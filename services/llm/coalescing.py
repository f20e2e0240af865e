"""Coalescing a completion's events into fewer stream messages, by a short time window.

Each gRPC message costs the llm (and the gateway reading it) a fixed amount of work: a send
operation, a completion-queue round trip and a poller-thread wake-up. One message per token made
that most of the service's CPU. So StreamComplete sends:

- the first event at once (time to first token is untouched), and likewise any event that comes
  after the stream was quiet for ``window`` seconds;
- after that, at most one message per ``window``: the events that arrived meanwhile, adjacent
  text deltas joined into one (``providers.coalesce``). A message goes early when it holds
  ``Done`` (the end is never held back) or ``max_events`` events.

A reader task pulls the stream into a list, so waiting out the window never delays the upstream
read and the stall watchdog still counts only the time spent waiting on the provider. It stops
at ``max_events`` unsent events: a slow client still slows the upstream read (backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from services.llm.providers.base import Done, Event
from services.llm.providers.coalesce import coalesce

# Unsent events the reader may hold: a few KB, and it bounds how far the upstream is read ahead.
MAX_EVENTS_PER_MESSAGE = 64


class _Relay:
    """What the reader task hands the sender: the unsent events, and how the stream ended."""

    __slots__ = ("eager", "ended", "error", "events", "max_events", "room", "waiter")

    def __init__(self, max_events: int) -> None:
        self.events: list[Event] = []
        self.max_events = max_events
        self.ended = False
        self.error: BaseException | None = None
        # The sender waits for any event (True) or only for the end, Done or a full list (False).
        self.eager = True
        self.waiter: asyncio.Future[None] | None = None
        self.room: asyncio.Future[None] | None = None  # the reader waits for the sender to take a full list

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def take(self) -> list[Event]:
        taken, self.events = self.events, []
        room, self.room = self.room, None
        if room is not None and not room.done():
            room.set_result(None)
        return taken


async def coalesced(
    events: AsyncGenerator[Event, None], *, window: float, max_events: int = MAX_EVENTS_PER_MESSAGE
) -> AsyncGenerator[list[Event], None]:
    """``events`` in order, as the lists that go in one message each (never empty).

    An exception the stream raises (a domain error before the first event) is raised here after
    the events before it. Closing this generator early cancels the read and closes the stream.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    loop = asyncio.get_running_loop()
    relay = _Relay(max_events)
    reader = asyncio.create_task(_read(events, relay))
    sent = float("-inf")
    try:
        while True:
            if not relay.events and not relay.ended:
                relay.eager = True
                await relay.wait()
            due = sent + window
            pending = relay.events
            if pending and not relay.ended and len(pending) < max_events and type(pending[-1]) is not Done:
                if loop.time() < due:
                    relay.eager = False
                    timer = loop.call_at(due, relay.wake)
                    try:
                        await relay.wait()
                    finally:
                        timer.cancel()
            batch = relay.take()
            if batch:
                yield coalesce(batch)
                if type(batch[-1]) is Done:
                    return
                sent = loop.time()
            elif relay.ended:
                if relay.error is not None:
                    raise relay.error
                return
    finally:
        if not reader.done():
            reader.cancel()
            # wait() rather than ``await reader``: the reader's cancellation is expected, while
            # a cancellation of this task must still propagate.
            await asyncio.wait((reader,))


async def _read(events: AsyncGenerator[Event, None], relay: _Relay) -> None:
    """Pulls ``events`` into ``relay`` (the reader task), then marks the end."""
    loop = asyncio.get_running_loop()
    try:
        # Closed here, in the task that iterated it: its context variables (set on its first
        # step) cannot be reset from another task, e.g. the sender's after a cancellation.
        async with contextlib.aclosing(events):
            async for event in events:
                pending = relay.events
                pending.append(event)
                full = len(pending) >= relay.max_events
                if relay.eager or full or type(event) is Done:
                    relay.wake()
                if full:
                    relay.room = loop.create_future()
                    await relay.room
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the sender, which raises it in its own task
        relay.error = exc
    relay.ended = True
    relay.wake()
