"""Overhead accounting: total time minus the time spent waiting on the provider."""

from __future__ import annotations

from services.llm.overhead import OverheadClock, provider_wait, reset_clock, start_clock


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_overhead_is_total_minus_provider_wait() -> None:
    t = FakeTime()
    clock = OverheadClock(clock=t)
    t.now += 0.001  # our code
    with clock.waiting():
        t.now += 0.020  # the provider's time to first token
    t.now += 0.0005
    clock.stop()
    assert abs(clock.total - 0.0215) < 1e-9
    assert abs(clock.provider_wait - 0.020) < 1e-9
    assert abs(clock.overhead - 0.0015) < 1e-9


def test_nested_waits_are_counted_once() -> None:
    t = FakeTime()
    clock = OverheadClock(clock=t)
    with clock.waiting():
        t.now += 0.005
        with clock.waiting():
            t.now += 0.005
    clock.stop()
    assert abs(clock.provider_wait - 0.010) < 1e-9
    assert clock.overhead == 0.0


def test_the_total_freezes_at_stop() -> None:
    t = FakeTime()
    clock = OverheadClock(clock=t)
    t.now += 1.0
    clock.stop()
    t.now += 5.0
    clock.stop()
    assert clock.total == 1.0


def test_provider_wait_marks_the_current_calls_clock_and_is_a_no_op_without_one() -> None:
    with provider_wait():
        pass  # no clock: nothing to record, nothing raised
    clock, token = start_clock()
    try:
        with provider_wait():
            sum(range(1000))
    finally:
        reset_clock(token)
    assert clock.provider_wait > 0
