"""Session-wide fixtures: one embedded PostgreSQL for the whole test session, and a guard that
keeps the suite inside its checkout."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.harness import SessionPostgres

REPO_ROOT = Path(__file__).resolve().parents[1]


def _refuse_reads_beside_checkout(event: str, args: tuple[object, ...]) -> None:
    """A clone has nothing beside it: a test that opens a sibling of the checkout (a
    ``../shared`` folder, say) passes here and fails for everyone else, so it fails here too."""
    if event != "open" or not isinstance(args[0], str | Path):
        return
    path = os.path.abspath(args[0])
    parent = str(REPO_ROOT.parent)
    if path.startswith(parent + os.sep) and not path.startswith(str(REPO_ROOT) + os.sep):
        raise PermissionError(f"tests must not read outside the checkout ({REPO_ROOT}): {path}")


sys.addaudithook(_refuse_reads_beside_checkout)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres() -> AsyncIterator[SessionPostgres]:
    # Not pytest's tmp_path: its 0700 parent is closed to the unprivileged user PostgreSQL runs as.
    data_dir = Path(tempfile.mkdtemp(prefix="agents-pg-"))
    server = SessionPostgres(data_dir / "data")
    await server.start()
    yield server
    await server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
