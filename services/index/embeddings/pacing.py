"""How hard an embedder drives its provider: a token budget, and a concurrency that adapts to 429s.

Concurrency is AIMD, as TCP's congestion window: each success adds ``1/limit`` (one slot per round
of ``limit`` successes), a 429 halves the limit, once per congestion event (the 429s of requests
that were already in flight when the limit was cut do not cut it again), never below one request
nor above the admin's ceiling. A provider's ``Retry-After`` holds every request, not only the one
that got it: the others would hit the same limit.

The token budget paces requests without bursts: each request is scheduled ``tokens / rate`` after
the previous one (a virtual schedule, as GCRA), so the tokens sent in any window of ``w`` seconds
stay within ``rate * w`` plus one request. Time lost to a hold is not made up with a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable


class Pacer:
    """Admits requests within the adaptive concurrency limit, the token budget and any hold."""

    def __init__(
        self, *, max_concurrency: int, tokens_per_minute: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ceiling = max(1, max_concurrency)
        self.limit = float(self.ceiling)
        self.tokens_per_second = tokens_per_minute / 60.0
        self._clock = clock
        self._in_flight = 0
        self._changed = asyncio.Condition()
        self._resume_at = 0.0
        self._next_send = 0.0
        self._last_cut = -math.inf

    @property
    def concurrency(self) -> int:
        """Requests that may be in flight at once now."""
        return max(1, int(self.limit))

    @contextlib.asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[float]:
        """Wait for a free slot, the budget for ``tokens`` and the end of any hold; yields the
        time the request is sent, which ``backoff`` needs."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_flight < self.concurrency)
            self._in_flight += 1
        try:
            await self._wait_turn(tokens)
            yield self._clock()
        finally:
            async with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def succeeded(self) -> None:
        """Additive increase: one more slot per round of successes."""
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def backoff(self, sent_at: float) -> None:
        """Multiplicative decrease after a 429 to a request sent at ``sent_at``."""
        if sent_at >= self._last_cut:
            self.limit = max(1.0, self.limit / 2.0)
            self._last_cut = self._clock()

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (the provider's Retry-After)."""
        self._resume_at = max(self._resume_at, self._clock() + seconds)

    async def _wait_turn(self, tokens: int) -> None:
        now = self._clock()
        start = max(now, self._resume_at)
        if self.tokens_per_second > 0:
            start = max(start, self._next_send)
            self._next_send = start + tokens / self.tokens_per_second
        while start > now:
            await asyncio.sleep(start - now)
            # A hold that began while this request waited still applies to it.
            now, start = self._clock(), max(start, self._resume_at)
