"""Grouping a completion's events into batches for clients that take several per message.

Each gRPC message costs the llm (and the gateway reading it) a fixed amount of work: a send
operation, a completion-queue round trip and a poller wake-up. One message per token made that
most of the service's CPU. A batching client gets, in each message, every event that was ready
when the previous message went out:

- nothing waits for more input: the first event, and any event after an idle gap, goes out
  alone and at once, so time to first token is untouched. Events only gather while a message
  is being written, i.e. exactly when the service or the client is the bottleneck;
- a batch holds at most ``max_events``; a reader task pulls the upstream into a queue of that
  size, so a slow client still slows the upstream read (backpressure), with at most
  ``max_events`` events read ahead of it;
- order and content are exactly the stream's; ``Done`` ends the last batch.

The reader runs the stream in its own task, so the stall watchdog still counts only the time
spent waiting on the provider, never the time a batch waits for the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from services.llm.providers.base import Done, Event

# A message of 64 events is a few KB at most; more would only delay a slow client's next read.
MAX_EVENTS_PER_BATCH = 64


class _End:
    """The stream ended (after its ``Done``, or early), or failed with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


async def event_batches(
    events: AsyncGenerator[Event, None], *, max_events: int = MAX_EVENTS_PER_BATCH
) -> AsyncGenerator[list[Event], None]:
    """``events`` in order, as lists of what was ready together (1 to ``max_events`` each).

    An exception the stream raises (a domain error before the first event) is raised here after
    the events before it. Closing this generator early cancels the read and closes the stream.
    """
    if max_events < 1:
        raise ValueError("max_events must be at least 1")
    queue: asyncio.Queue[Event | _End] = asyncio.Queue(maxsize=max_events)
    reader = asyncio.create_task(_read(events, queue))
    try:
        while True:
            item = await queue.get()
            batch: list[Event] = []
            while True:
                if isinstance(item, _End):
                    if batch:
                        yield batch
                    if item.error is not None:
                        raise item.error
                    return
                batch.append(item)
                if len(batch) >= max_events or type(item) is Done or queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
            if type(batch[-1]) is Done:
                return
    finally:
        if not reader.done():
            reader.cancel()
            # wait() rather than ``await reader``: the reader's cancellation is expected, while
            # a cancellation of this task must still propagate.
            await asyncio.wait((reader,))


async def _read(events: AsyncGenerator[Event, None], queue: asyncio.Queue[Event | _End]) -> None:
    """Pulls ``events`` into ``queue`` (the batching reader task), then an ``_End``."""
    try:
        # Closed here, in the task that iterated it: its context variables (set on its first
        # step) cannot be reset from another task, e.g. the consumer's after a cancelled put.
        async with contextlib.aclosing(events):
            async for event in events:
                await queue.put(event)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the consumer, which raises it in its own task
        await queue.put(_End(exc))
        return
    await queue.put(_End())
