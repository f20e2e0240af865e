"""Agents_ConfigHistory and Agents_System: the append-only plugin configuration and the registry's
small key/value table. Every write happens under the plugin's advisory lock (12457, 1) so two
replicas saving at once serialise instead of tearing the one-active-row invariant."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# The plugin's lock key for configuration writes; kept so a mixed deployment still serialises.
CONFIG_LOCK = (12457, 1)
# NOTIFY channel every index replica LISTENs on; the payload is the new revision id.
NOTIFY_CHANNEL = "agents_config"


def new_id() -> str:
    """A 26-character id in Mattermost's style (base32 of 128 random bits)."""
    return base64.b32encode(os.urandom(16)).decode().lower().rstrip("=")[:26]


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, the tables' timestamp unit."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ConfigRevision:
    """One row of Agents_ConfigHistory: the revision id, the document and when it was saved."""

    revision: str
    config: dict[str, Any]
    create_at: int


class ConfigTx:
    """Reads and writes inside one locked transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def active(self) -> ConfigRevision | None:
        """The active configuration, as this transaction sees it."""
        row = (
            await self.conn.execute(text("SELECT id, config, createat FROM agents_confighistory WHERE active"))
        ).first()
        return ConfigRevision(row.id, json.loads(row.config), row.createat) if row else None

    async def write(self, config: dict[str, Any]) -> str:
        """Append ``config`` as the new active row and notify every listener on commit."""
        revision = new_id()
        await self.conn.execute(text("UPDATE agents_confighistory SET active = false WHERE active"))
        await self.conn.execute(
            text("INSERT INTO agents_confighistory (id, config, createat, active) VALUES (:id, :c, :t, true)"),
            {"id": revision, "c": json.dumps(config), "t": now_ms()},
        )
        # Delivered at commit, to every session LISTENing (other replicas included).
        await self.conn.execute(text("SELECT pg_notify(:ch, :rev)"), {"ch": NOTIFY_CHANNEL, "rev": revision})
        return revision

    async def system_value(self, key: str) -> str | None:
        """A value of Agents_System, or None when the key is not set."""
        row = (await self.conn.execute(text("SELECT svalue FROM agents_system WHERE skey = :k"), {"k": key})).first()
        return row.svalue if row else None

    async def set_system_value(self, key: str, value: str) -> None:
        """Set a value of Agents_System."""
        await self.conn.execute(
            text(
                "INSERT INTO agents_system (skey, svalue) VALUES (:k, :v) "
                "ON CONFLICT (skey) DO UPDATE SET svalue = excluded.svalue"
            ),
            {"k": key, "v": value},
        )


class ConfigStore:
    """The configuration tables: lock-free reads and locked read-modify-write transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def active(self) -> ConfigRevision | None:
        """The active configuration, read without the lock (readers never block writers)."""
        async with self.engine.connect() as conn:
            return await ConfigTx(conn).active()

    @asynccontextmanager
    async def locked(self) -> AsyncIterator[ConfigTx]:
        """One transaction holding the configuration lock until it commits or rolls back."""
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": CONFIG_LOCK[0], "b": CONFIG_LOCK[1]})
            yield ConfigTx(conn)
