"""The benchmarks' statistics: percentiles, the spread of repeated runs, the RSS slope of a soak."""

from __future__ import annotations

import math

import pytest

from bench.conversations_scale import peak_overlap
from bench.stats import Spread, percentile, slope


def test_percentile_is_nearest_rank_and_nan_without_samples() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100, unordered below
    shuffled = samples[50:] + samples[:50]
    assert percentile(shuffled, 50) == 51.0  # rank round(0.5 * 99) = 50 (0-based)
    assert percentile(shuffled, 99) == 99.0
    assert percentile(shuffled, 100) == 100.0
    assert math.isnan(percentile([], 50))


def test_spread_is_the_median_and_range_of_rounds() -> None:
    spread = Spread.of([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high) == (2.0, 1.0, 3.0)
    assert spread.format() == "2.0 (1.0-3.0)"
    assert Spread.of([4.25]).format(2) == "4.25"  # one round: no range to show
    assert Spread.of([]).format() == "-"


def test_slope_is_least_squares_and_nan_when_undefined() -> None:
    # RSS growing 2 MB per second with noise that cancels out.
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    ys = [100.0, 102.5, 103.5, 106.5, 107.5]
    assert slope(xs, ys) == pytest.approx(1.9)
    assert slope(xs, [50.0] * 5) == 0.0  # flat
    assert math.isnan(slope([1.0], [2.0]))
    assert math.isnan(slope([1.0, 1.0], [2.0, 3.0]))


def test_peak_overlap_counts_answers_live_at_one_instant() -> None:
    assert peak_overlap([(0, 10), (1, 2), (3, 4), (3.5, 5)]) == 3
    assert peak_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts
    assert peak_overlap([]) == 0
