"""Overhead accounting: how much of a completion's wall time is spent in our code.

``overhead = total - time waiting on the provider``. The provider wait is measured where we
actually wait on the upstream socket (sending the request and awaiting each body chunk, in
``providers.http_stream``), not around a provider's event iterator, so SSE and JSON decoding —
our code — count as overhead. The clock travels in a context variable: the provider generator
runs in the task of the call that started it, so no signature has to carry it.

Nothing here imports gRPC or aiohttp; the figure ends on a histogram and on the span.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class OverheadClock:
    """Wall time of one call, split into provider wait and the rest.

    ``waiting()`` blocks may nest (a helper that waits inside a provider that already marked
    its wait): only the outermost one counts, so nothing is counted twice.
    """

    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    started: float = 0.0
    ended: float | None = None
    provider_wait: float = 0.0
    _depth: int = 0
    _wait_started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self._now()

    def _now(self) -> float:
        return self.clock()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Mark the enclosed block as time spent waiting on the provider."""
        if self._depth == 0:
            self._wait_started = self._now()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.provider_wait += self._now() - self._wait_started

    def now(self) -> float:
        """This clock's reading (for ``add_wait``)."""
        return self._now()

    def add_wait(self, since: float) -> None:
        """Count from ``since`` (a ``now()`` reading) up to now as provider wait, unless an outer
        ``waiting()`` block already counts it. The per-chunk hot path uses this: a context
        manager per socket read costs more than the read's own bookkeeping."""
        if self._depth == 0:
            self.provider_wait += self._now() - since

    def stop(self) -> None:
        """Freeze the total; later calls keep the first end time."""
        if self.ended is None:
            self.ended = self._now()

    @property
    def total(self) -> float:
        """Seconds from start to the end, or to now while running."""
        end = self.ended if self.ended is not None else self._now()
        return max(0.0, end - self.started)

    @property
    def overhead(self) -> float:
        """Seconds spent in our code (never negative: clock jitter cannot make it so)."""
        return max(0.0, self.total - self.provider_wait)


_current: contextvars.ContextVar[OverheadClock | None] = contextvars.ContextVar("llm_overhead_clock", default=None)


def start_clock() -> tuple[OverheadClock, contextvars.Token[OverheadClock | None]]:
    """A new clock made current for this task; reset the token when the call ends."""
    clock = OverheadClock()
    return clock, _current.set(clock)


def current_clock() -> OverheadClock | None:
    """The clock of the call running in this task, if any."""
    return _current.get()


def reset_clock(token: contextvars.Token[OverheadClock | None]) -> None:
    """Makes current again the clock ``start_clock`` replaced."""
    _current.reset(token)


@contextmanager
def provider_wait() -> Iterator[None]:
    """Provider code wraps each await on the upstream in this; a no-op without a current clock."""
    clock = _current.get()
    if clock is None:
        yield
        return
    with clock.waiting():
        yield
