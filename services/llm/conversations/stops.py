"""Stopping a stream from any replica.

A Stop RPC may land on a replica other than the one writing the post. It sets the post's stop flag
in ``LLM_Streams``; every replica polls the flags of the streams it runs, in one query per
interval, and cancels the local stream when its flag is set. A Stop on the writing replica also
cancels it at once, without waiting for the poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from services.llm.conversations.store import ConversationStore

logger = logging.getLogger(__name__)

# Seconds between polls of the stop flags while at least one local stream runs: a stop takes
# effect within this time on another replica.
POLL_INTERVAL_SECONDS = 0.2


class StopWatcher:
    """Hands each local stream an ``asyncio.Event`` that is set when someone stops its post."""

    def __init__(self, store: ConversationStore, *, interval: float = POLL_INTERVAL_SECONDS) -> None:
        self.store = store
        self.interval = interval
        self._events: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(self, response_post_id: str) -> AsyncIterator[asyncio.Event]:
        """The stop event of a post while its stream runs here."""
        event = asyncio.Event()
        self._events[response_post_id] = event
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="stop-flag-poller")
        try:
            yield event
        finally:
            if self._events.get(response_post_id) is event:
                del self._events[response_post_id]

    def stop_local(self, response_post_id: str) -> None:
        """Stops the post's stream if it runs on this replica (no poll needed)."""
        event = self._events.get(response_post_id)
        if event is not None:
            event.set()

    async def _poll(self) -> None:
        while self._events:
            await asyncio.sleep(self.interval)
            ids = [pid for pid, ev in self._events.items() if not ev.is_set()]
            if not ids:
                continue
            try:
                stopped = await self.store.stops_requested(ids)
            except Exception:  # the next poll retries; a broken database must not kill the watcher
                logger.warning("could not read stop flags", exc_info=True)
                continue
            for pid in stopped:
                self.stop_local(pid)

    async def close(self) -> None:
        """Stops polling the stop flags."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
