"""The provider tests' one fixture, ``upstream`` (``provider_support.py``), and shorthands for
its parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from services.common.http import new_client_session
from services.llm.providers.base import Provider
from tests.unit.llm.provider_support import Upstream, Wire


@pytest.fixture
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[Upstream]:
    """The test module's ``UPSTREAM`` wire: its fake started afresh, a client session, settings."""
    wire: Wire = request.module.UPSTREAM
    fake = wire.fake()
    await fake.start()
    try:
        async with new_client_session(trust_env=False) as session:
            yield Upstream(wire, fake, session, wire.settings(fake))
    finally:
        await fake.close()


@pytest.fixture
def fake(upstream: Upstream) -> Any:
    return upstream.fake


@pytest.fixture
def session(upstream: Upstream) -> aiohttp.ClientSession:
    return upstream.session


@pytest.fixture
def provider(upstream: Upstream) -> Provider:
    return upstream.provider()
