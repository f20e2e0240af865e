"""Session-wide fixtures: one embedded PostgreSQL for the whole test session."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.harness import SessionPostgres


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres() -> AsyncIterator[SessionPostgres]:
    # Not pytest's tmp_path: its 0700 parent is closed to the unprivileged user PostgreSQL runs as.
    data_dir = Path(tempfile.mkdtemp(prefix="agents-pg-"))
    server = SessionPostgres(data_dir / "data")
    await server.start()
    yield server
    await server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
