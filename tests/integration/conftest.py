"""What every integration suite shares beyond the session's PostgreSQL (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fakes.openai import FakeOpenAI
from tests.polling import poll


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def scripted_answers_used_up(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a test whose ``world`` scripts a fake OpenAI, every scripted answer was served. A new
    conversation's title is asked for once its answer has ended, possibly after the test: this
    keeps that late request from taking the next test's scripted answers."""
    yield
    openai = getattr(request.node.funcargs.get("world"), "openai", None)
    if isinstance(openai, FakeOpenAI):
        await poll(lambda: openai.queued == 0, within=20, message="scripted answers were left unserved")
