"""When to patch the reply post: at most once per interval, never per token, and never late.

Tokens arrive every few milliseconds; each patch is a Mattermost write plus a ``post_edited``
broadcast to every channel member, so the writer coalesces changes: the first change after a
quiet period is patched at once, later ones wait until ``interval`` has passed since the last
patch, and a change never waits longer than that (a pause in the model still shows up).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class PatchSchedule:
    """The timing rule alone, with an injectable clock (pure; unit-tested with a fake clock)."""

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last_patch: float | None = None

    def delay(self) -> float:
        """Seconds to wait before a pending change may be patched (0 = now)."""
        if self._last_patch is None:
            return 0.0
        return max(0.0, self._last_patch + self.interval - self.clock())

    def patched(self) -> None:
        """Record that a patch was sent now."""
        self._last_patch = self.clock()


class ThrottledPatcher:
    """Runs ``patch`` for pending changes following a ``PatchSchedule``, in one background task."""

    def __init__(self, patch: Callable[[], Awaitable[None]], schedule: PatchSchedule) -> None:
        self._patch = patch
        self._schedule = schedule
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def changed(self) -> None:
        """Something the post shows changed; it will be patched within the interval."""
        self._pending.set()
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            delay = self._schedule.delay()
            if delay > 0:
                await asyncio.sleep(delay)
            self._pending.clear()
            self._schedule.patched()
            try:
                await self._patch()
            except Exception:
                # A failed intermediate patch is not fatal: the next change or the final patch
                # carries the whole text again.
                logger.exception("patching the reply post failed")

    async def close(self) -> None:
        """Stop patching (the caller writes the final patch itself)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
