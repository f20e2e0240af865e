"""The conversation loop of the llm service (agents.llm.v1.Conversations).

``build_conversations`` wires it for ``services/llm/server.py``: the caller passes the gRPC
channel pool and the process's provider cache; the result holds the servicer and what
``prepare``/``close`` must run (database wait and migrations, the stop-flag poller).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.grpc_client import ChannelPool
from services.common.mattermost.client import MattermostClient
from services.common.settings import CommonSettings
from services.llm.conversations.runtime import ProviderSource, Runtime

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version_llm"


@dataclass
class ConversationsWiring:
    """The Conversations servicer and the resources behind it."""

    servicer: object
    engine: AsyncEngine
    _closers: list[object]

    async def prepare(self) -> None:
        """Wait for PostgreSQL and bring the llm service's tables to head."""
        await db.wait_for_database(self.engine)
        await db.run_migrations(self.engine, MIGRATIONS, VERSION_TABLE)

    async def close(self) -> None:
        for closer in self._closers:
            await closer.close()  # type: ignore[attr-defined]
        await self.engine.dispose()


def build_conversations(
    settings: CommonSettings, pool: ChannelPool, providers: ProviderSource, engine: AsyncEngine | None = None
) -> ConversationsWiring:
    """Everything the Conversations RPCs need; nothing connects until first use or ``prepare``."""
    from services.llm.conversations.analysis import Analyses
    from services.llm.conversations.peers import Peers
    from services.llm.conversations.reads import ConversationReader
    from services.llm.conversations.responses import Responses
    from services.llm.conversations.servicer import ConversationsServicer
    from services.llm.conversations.stops import StopWatcher
    from services.llm.conversations.store import ConversationStore

    engine = engine or db.create_engine(settings.database_url)
    store = ConversationStore(engine)
    mattermost = MattermostClient(settings.mattermost_url, settings.mattermost_token)
    stops = StopWatcher(store)
    runtime = Runtime(store, Peers(settings, pool), providers, mattermost, stops)
    servicer = ConversationsServicer(Responses(runtime), Analyses(runtime), ConversationReader(runtime))
    return ConversationsWiring(servicer, engine, [stops, _MattermostCloser(mattermost)])


class _MattermostCloser:
    def __init__(self, client: MattermostClient) -> None:
        self.client = client

    async def close(self) -> None:
        await self.client.aclose()
