"""PostgreSQL access shared by the services that own tables: async engine, start-up wait, and
Alembic migrations that are safe when several replicas start at once.

Each owning service has its own Alembic history (its own version table) in
``services/<name>/migrations``; a PostgreSQL advisory lock serialises concurrent upgrades, so the
first replica migrates and the others find nothing left to do.
"""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from services.common.errors import UpstreamUnavailable

logger = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """Use the psycopg 3 driver whatever scheme the operator wrote (postgres://, postgresql://)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, pool_size: int = 10, statement_timeout_ms: int = 30_000) -> AsyncEngine:
    """A pooled psycopg engine for ``url``, pinging connections before use and bounding each statement;
    UpstreamUnavailable when no database is configured."""
    if not url:
        raise UpstreamUnavailable("no database configured: set DATABASE_URL")
    return create_async_engine(
        async_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"options": f"-c statement_timeout={statement_timeout_ms}", "connect_timeout": 5},
    )


async def wait_for_database(engine: AsyncEngine, *, timeout: float = 60.0) -> None:
    """Retry with backoff until the database answers, or raise UpstreamUnavailable."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((OperationalError, DBAPIError, OSError)),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(timeout),
            reraise=True,
        ):
            with attempt:
                async with engine.connect() as conn:
                    await conn.execute(text("select 1"))
    except (OperationalError, DBAPIError, OSError) as exc:
        raise UpstreamUnavailable(f"database not reachable after {timeout:.0f}s: {type(exc).__name__}") from None


def _lock_key(version_table: str) -> int:
    # A stable 32-bit key per history, so different services migrate in parallel.
    return zlib.crc32(f"agents-migrations:{version_table}".encode())


async def run_migrations(engine: AsyncEngine, script_location: Path, version_table: str) -> None:
    """Upgrade to head under a session advisory lock (replicas wait, then find nothing to do)."""
    key = _lock_key(version_table)
    async with engine.connect() as conn:
        await conn.execute(text("select pg_advisory_lock(:k)"), {"k": key})
        try:
            await conn.run_sync(_upgrade, script_location, version_table)
            await conn.commit()
        finally:
            await conn.execute(text("select pg_advisory_unlock(:k)"), {"k": key})
            await conn.commit()
    logger.info("migrations at head", extra={"version_table": version_table})


def _upgrade(connection: Connection, script_location: Path, version_table: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["connection"] = connection
    cfg.attributes["version_table"] = version_table
    command.upgrade(cfg, "head")
