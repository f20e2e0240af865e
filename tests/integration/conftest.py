"""Fixtures every integration suite gets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.leftovers import drop_leftover_scripts


@pytest.fixture(autouse=True)
def _drop_leftover_scripts() -> Iterator[None]:
    """Each test starts with the module's fakes unscripted, whatever the previous test left queued."""
    yield
    drop_leftover_scripts()
