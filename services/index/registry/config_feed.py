"""Pushes the active plugin configuration to WatchPluginConfig subscribers within a second of a
change, whichever replica made it: the process's ChangeListener hears the configuration channel
and the feed fans new revisions out to its subscribers' queues. ``current`` is also the
in-process copy hot reads use instead of a database round trip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from services.common import telemetry
from services.index.registry.change_listener import ChangeListener
from services.index.registry.config_store import NOTIFY_CHANNEL, ConfigRevision, ConfigStore

logger = logging.getLogger(__name__)

EMPTY = ConfigRevision("", {}, 0)


class ConfigFeed:
    """The active configuration revision as this process last heard it, and its subscribers."""

    def __init__(self, store: ConfigStore, listener: ChangeListener) -> None:
        self.store = store
        self.current = EMPTY
        self._subscribers: set[asyncio.Queue[ConfigRevision]] = set()
        # Refreshes read one after another, so an older read can never be published after a newer one.
        self._refreshing = asyncio.Lock()
        # Whether a change committed anywhere would reach ``current`` (the listener is connected).
        self.hearing = False
        listener.watch(NOTIFY_CHANNEL, self._on_change, self._on_lost)

    async def _on_change(self) -> None:
        await self.refresh()
        self.hearing = True

    def _on_lost(self) -> None:
        self.hearing = False

    async def refresh(self) -> ConfigRevision:
        """Read the active row; publish it when it is a new revision."""
        async with self._refreshing:
            active = await self.store.active() or EMPTY
            if active.revision != self.current.revision:
                self.publish(active)
            return self.current

    def publish(self, revision: ConfigRevision) -> None:
        """Make ``revision`` current, apply its tracing output to this process, and hand it to
        every subscriber."""
        self.current = revision
        config = revision.config
        telemetry.apply_output(str(config.get("telemetryOutput") or ""), str(config.get("openTelemetryEndpoint") or ""))
        for queue in self._subscribers:
            # Only the newest revision matters to a slow subscriber.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(revision)

    async def subscribe(self) -> AsyncIterator[ConfigRevision]:
        """The current revision, then every new one, until the caller stops iterating."""
        queue: asyncio.Queue[ConfigRevision] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield self.current
            last = self.current.revision
            while True:
                revision = await queue.get()
                if revision.revision != last:
                    last = revision.revision
                    yield revision
        finally:
            self._subscribers.discard(queue)
