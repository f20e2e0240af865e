"""Pushes the active plugin configuration to WatchPluginConfig subscribers within a second of a
change, whichever replica made it: each index process LISTENs on the notification channel and
fans new revisions out to its subscribers' queues."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from sqlalchemy.engine import make_url

from services.index.registry.config_store import NOTIFY_CHANNEL, ConfigRevision, ConfigStore

logger = logging.getLogger(__name__)

EMPTY = ConfigRevision("", {}, 0)


def libpq_url(database_url: str) -> str:
    """The URL without SQLAlchemy's driver suffix (psycopg connects with a plain libpq URL)."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class ConfigFeed:
    def __init__(self, store: ConfigStore, database_url: str) -> None:
        self.store = store
        self.database_url = database_url
        self.current = EMPTY
        self._subscribers: set[asyncio.Queue[ConfigRevision]] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Load the active revision and start listening (returns once LISTEN is in place)."""
        await self.refresh()
        self._task = asyncio.create_task(self._listen(), name="config-feed-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 10)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self) -> ConfigRevision:
        """Read the active row; publish it when it is a new revision."""
        active = await self.store.active() or EMPTY
        if active.revision != self.current.revision:
            self.publish(active)
        return self.current

    def publish(self, revision: ConfigRevision) -> None:
        self.current = revision
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

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(libpq_url(self.database_url), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    # A change committed while we were reconnecting has no notification for us.
                    await self.refresh()
                    delay = 0.1
                    async for _ in conn.notifies():
                        await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("configuration listener lost its connection: %s; retrying", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
