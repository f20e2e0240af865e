"""The patch schedule: the first change at once, later ones at most once per interval."""

from __future__ import annotations

from services.gateway.rendering.throttle import PatchSchedule


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_change_is_patched_at_once() -> None:
    schedule = PatchSchedule(0.3, FakeClock())
    assert schedule.delay() == 0.0


def test_changes_within_the_interval_wait_for_its_end() -> None:
    clock = FakeClock()
    schedule = PatchSchedule(0.3, clock)
    schedule.patched()
    clock.now += 0.1
    assert abs(schedule.delay() - 0.2) < 1e-9


def test_a_change_after_a_quiet_interval_is_patched_at_once() -> None:
    clock = FakeClock()
    schedule = PatchSchedule(0.3, clock)
    schedule.patched()
    clock.now += 1.0
    assert schedule.delay() == 0.0


def test_a_token_every_10ms_for_a_second_gives_one_patch_per_interval_not_per_token() -> None:
    clock = FakeClock()
    schedule = PatchSchedule(0.3, clock)
    patches = 0
    for _ in range(100):
        if schedule.delay() == 0.0:
            schedule.patched()
            patches += 1
        clock.now += 0.01
    assert 3 <= patches <= 4
