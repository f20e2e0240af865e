"""``python -m services.cluster migrate``: every service's schema to head, then exit.

The Helm chart runs this as a pre-install/pre-upgrade hook Job so that a failing migration stops
the release before any new pod starts. Services still migrate at start (under the same advisory
lock), so without the hook nothing breaks; they just find nothing left to do.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from services.cluster.supervisor import GRPC_SERVICES
from services.common import db
from services.common.errors import UpstreamUnavailable

logger = logging.getLogger(__name__)


def histories() -> list[tuple[str, Path, str]]:
    """(service, migrations folder, version table) of every service that owns tables."""
    found = []
    for name in GRPC_SERVICES:
        server = importlib.import_module(f"services.{name}.server")
        folder = getattr(server, "MIGRATIONS", None)
        if folder is not None:
            found.append((name, Path(folder), str(server.VERSION_TABLE)))
    return found


async def migrate(database_url: str, *, wait_seconds: float = 60.0) -> int:
    """Upgrade each history in turn; 0 when all are at head, 1 (with the reason) otherwise."""
    try:
        engine = db.create_engine(database_url, pool_size=1)
    except UpstreamUnavailable as err:
        logger.error("migrations not run: %s", err)
        return 1
    try:
        await db.wait_for_database(engine, timeout=wait_seconds)
        for name, folder, table in histories():
            await db.run_migrations(engine, folder, table)
            print(f"{name}: at head ({table})", flush=True)
    except UpstreamUnavailable as err:
        logger.error("migrations not run: %s", err)
        return 1
    finally:
        await engine.dispose()
    return 0
