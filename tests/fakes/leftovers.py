"""The running fakes that answer from a script, so that what one test queued and never used is
dropped before the next test runs (``tests/integration/conftest.py``).

Suites share one fake per module; without this, a test that fails before its scripted answers
are asked for hands them to the next test, which then gets a stall or an error it never asked
for and fails in turn.
"""

from __future__ import annotations

from typing import Protocol


class Scripted(Protocol):
    def drop_script(self) -> None:
        """Forget every scripted answer not served yet."""


_running: list[Scripted] = []


def started(fake: Scripted) -> None:
    _running.append(fake)


def stopped(fake: Scripted) -> None:
    # By identity: the fakes are dataclasses, whose == compares fields.
    _running[:] = [f for f in _running if f is not fake]


def drop_leftover_scripts() -> None:
    for fake in _running:
        fake.drop_script()
