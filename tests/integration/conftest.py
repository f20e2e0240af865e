"""What every integration suite shares beyond the session's PostgreSQL (tests/conftest.py): each
test starts with the module's fakes holding no script a previous test left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator

import pytest
import pytest_asyncio

from tests.fakes.leftovers import drop_leftover_scripts
from tests.fakes.openai import FakeOpenAI
from tests.polling import poll


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        item.stash[_FAILED] = bool(getattr(report, "failed", False))
    return report


_FAILED = pytest.StashKey[bool]()


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _fakes_start_unscripted(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a passing test, every answer it scripted on a fake OpenAI is served first: a new
    conversation's title is asked for once its answer has ended, possibly after the test, and must
    not take the next test's answers. After a failing test (or one whose scripts will never be
    asked for) the leftovers are dropped at once, so one failure does not poison the next tests."""
    yield
    openai = getattr(request.node.funcargs.get("world"), "openai", None)
    try:
        if isinstance(openai, FakeOpenAI) and not request.node.stash.get(_FAILED, True):
            await poll(lambda: openai.queued == 0, within=10, message="scripted answers were left unserved")
    finally:
        drop_leftover_scripts()
