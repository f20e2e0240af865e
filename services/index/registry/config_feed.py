"""Pushes the active plugin configuration to WatchPluginConfig subscribers within a second of a
change, whichever replica made it: the process's ChangeListener hears the configuration channel
and the feed fans new revisions out to its subscribers' queues. ``current`` is also the
in-process copy hot reads use instead of a database round trip. The cluster's license rides along:
subscribers hear a license change as they hear a new revision."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from services.common import telemetry
from services.common.licensing import License
from services.index.registry.change_listener import ChangeListener
from services.index.registry.config_store import NOTIFY_CHANNEL, ConfigRevision, ConfigStore

logger = logging.getLogger(__name__)

EMPTY = ConfigRevision("", {}, 0)
Published = tuple[ConfigRevision, License]


class ConfigFeed:
    """The active configuration revision as this process last heard it, the license, and subscribers."""

    def __init__(self, store: ConfigStore, listener: ChangeListener) -> None:
        self.store = store
        self.current = EMPTY
        self.license = License.NONE
        # None in a queue ends that subscription (``end_subscriptions``).
        self._subscribers: set[asyncio.Queue[Published | None]] = set()
        self._ended = False
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
        self._hand_out()

    def set_license(self, license: License) -> None:
        """Make ``license`` the cluster's; subscribers hear it with the current revision."""
        if license != self.license:
            self.license = license
            self._hand_out()

    def _hand_out(self) -> None:
        for queue in self._subscribers:
            # Only the newest state matters to a slow subscriber.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None if self._ended else (self.current, self.license))

    def end_subscriptions(self) -> None:
        """End every subscription, now and later (the process is draining): a watch stream that
        never ends would hold the shutdown for its whole grace, and its client reconnects to a
        live replica instead."""
        self._ended = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    async def subscribe(self) -> AsyncIterator[Published]:
        """The current revision and license, then every change of either, until the caller stops
        or the subscriptions end."""
        queue: asyncio.Queue[Published | None] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            last = (self.current, self.license)
            yield last
            while not self._ended:
                published = await queue.get()
                if published is None:
                    return
                revision, license = published
                if (revision.revision, license) != (last[0].revision, last[1]):
                    last = (revision, license)
                    yield last
        finally:
            self._subscribers.discard(queue)
