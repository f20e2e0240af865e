"""One LISTEN connection per index process for the registry's change channels.

Writes to the registry's tables send ``pg_notify`` inside their transaction, so every replica
hears about a commit (its own included) within milliseconds. Whoever keeps state derived from
those tables in memory (the configuration feed, the active-agents cache) registers a channel here:
``on_change`` runs for each notification and once after every (re)connect, because changes
committed while the connection was down sent notifications nobody received; ``on_lost`` runs when
the connection drops, so a cache can stop trusting itself until it hears again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

# How long start() waits for LISTEN to be in place before serving anyway (the listener keeps trying).
START_TIMEOUT_SECONDS = 10.0


def libpq_url(database_url: str) -> str:
    """The URL without SQLAlchemy's driver suffix (psycopg connects with a plain libpq URL)."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass(frozen=True)
class _Watch:
    channel: str
    on_change: Callable[[], Awaitable[None]]
    on_lost: Callable[[], None]


def _nothing() -> None:
    return None


class ChangeListener:
    """LISTENs on every registered channel and dispatches notifications to their watchers."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._watches: list[_Watch] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def watch(
        self, channel: str, on_change: Callable[[], Awaitable[None]], on_lost: Callable[[], None] = _nothing
    ) -> None:
        """Register before ``start``; ``channel`` must be a plain SQL identifier (it is not quoted)."""
        if not channel.isidentifier():
            raise ValueError(f"not a channel name: {channel!r}")
        self._watches.append(_Watch(channel, on_change, on_lost))

    @property
    def listening(self) -> bool:
        """Whether notifications are being received right now."""
        return self._listening.is_set()

    async def start(self) -> None:
        """Start listening; returns once LISTEN is in place (or after a bounded wait)."""
        self._task = asyncio.create_task(self._run(), name="registry-change-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), START_TIMEOUT_SECONDS)

    async def close(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _dispatch(self, channel: str | None) -> None:
        for watch in self._watches:
            if channel is None or watch.channel == channel:
                try:
                    await watch.on_change()
                except Exception:
                    # One failing watcher must not starve the others or drop the connection.
                    logger.exception("change handler for %s failed", watch.channel)

    def _lost(self) -> None:
        self._listening.clear()
        for watch in self._watches:
            watch.on_lost()

    async def _run(self) -> None:
        delay = 0.1
        channels = sorted({w.channel for w in self._watches})
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(libpq_url(self.database_url), autocommit=True) as conn:
                    for channel in channels:
                        await conn.execute(f"LISTEN {channel}")
                    self._listening.set()
                    # A change committed while we were (re)connecting has no notification for us.
                    await self._dispatch(None)
                    delay = 0.1
                    async for notification in conn.notifies():
                        await self._dispatch(notification.channel)
            except asyncio.CancelledError:
                self._lost()
                raise
            except Exception as exc:
                logger.warning("change listener lost its connection: %s; retrying", type(exc).__name__)
            self._lost()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
