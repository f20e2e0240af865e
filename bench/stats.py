"""Small statistics the benchmarks share: percentiles, the spread of repeated runs, the
least-squares slope of a series (memory growth over a soak), and their measure/value table."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0-100); NaN without samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Spread:
    """The median of repeated measurements and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"))
        return cls(statistics.median(values), min(values), max(values))

    def format(self, digits: int = 1) -> str:
        """``median (min-max)``, the median alone when there is one value, ``-`` when none."""
        if math.isnan(self.median):
            return "-"
        if self.low == self.high:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of ``ys`` over ``xs``; NaN with fewer than two distinct ``xs``."""
    try:
        return statistics.linear_regression(xs, ys).slope
    except statistics.StatisticsError:
        return float("nan")


def print_rows(title: str, rows: Sequence[tuple[str, object]], *, label_width: int, value_width: int) -> None:
    """A bench's result: its title, then one ``measure  value`` line per row."""
    print(f"\n== {title} ==")
    print(f"{'measure':<{label_width}}{'value':>{value_width}}")
    for label, value in rows:
        print(f"{label:<{label_width}}{value:>{value_width}}")
