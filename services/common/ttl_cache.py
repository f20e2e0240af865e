"""A small expiring LRU for values that may be reused briefly (validated tokens, look-ups)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A small LRU whose entries expire; bounded so a flood of tokens cannot grow it."""

    def __init__(self, ttl: float, max_entries: int = 10_000, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` is injectable so tests step time instead of sleeping."""
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value for ``key`` (now the most recently used), or None when absent or expired."""
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``ttl`` seconds, evicting the least recently used past ``max_entries``."""
        if self.ttl <= 0:
            return
        self._items[key] = (self._clock() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (the source changed)."""
        self._items.clear()
