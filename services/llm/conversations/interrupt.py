"""Ending a wait on a model's next event when the turn is stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from services.llm.providers.base import Event


class Stopped(Exception):
    """The turn's stop was set while the model's next event was awaited."""


class StopInterrupt:
    """Ends a wait on the model's next event as soon as the turn's ``stop`` is set.

    The wait runs in the caller's own task, which a stop cancels while (and only while) it waits;
    the cancellation is told apart from anyone else's the way ``asyncio.timeout`` does it. A task
    and an ``asyncio.wait`` per event, racing the read against the stop, cost a good part of the
    llm's CPU per relayed token.
    """

    __slots__ = ("_cancelling", "_fired", "_stop", "_stopper", "_task", "_waiting")

    def __init__(self, stop: asyncio.Event) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._stop = stop
        self._waiting = False
        self._fired = False
        self._cancelling = 0
        self._stopper = asyncio.ensure_future(stop.wait())
        self._stopper.add_done_callback(self._on_stop)

    def _on_stop(self, stopper: asyncio.Future[Any]) -> None:
        if not stopper.cancelled() and self._waiting and not self._fired:
            self._fired = True
            self._task.cancel()

    async def next(self, stream: AsyncIterator[Event]) -> Event:
        """The stream's next event; ``Stopped`` once the stop is set."""
        if self._stop.is_set():
            raise Stopped
        self._cancelling = self._task.cancelling()
        self._waiting = True
        try:
            event = await anext(stream)
        except BaseException:
            # Whatever the stream made of the cancellation (it may end or map it), it was ours.
            if self._fired and self._task.uncancel() <= self._cancelling:
                raise Stopped from None
            raise
        finally:
            self._waiting = False
        if self._fired:
            # The stream took the cancellation and still produced an event: the request is spent;
            # the next call sees the stop.
            self._task.uncancel()
        return event

    def close(self) -> None:
        """Stop watching the stop (once the round's stream is done)."""
        self._stopper.cancel()
