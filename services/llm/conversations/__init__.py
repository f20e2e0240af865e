"""The conversation loop of the llm service (agents.llm.v1.Conversations).

``build_conversations`` wires it for ``services/llm/server.py``: the caller passes the gRPC
channel pool, the process's provider cache, its observed completions and its live plugin
config; the result holds the servicer and what ``prepare``/``close`` must run (database wait
and migrations; on close the running turns save their partial answers, titles still being
generated are cancelled, then the stop-flag poller ends).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.grpc_client import ChannelPool
from services.common.mattermost.client import MattermostClient
from services.common.plugin_config import PluginConfigWatcher
from services.llm.conversations.calls import ModelCalls
from services.llm.conversations.runtime import ProviderSource, Runtime
from services.llm.conversations.store import ConversationStore
from services.llm.settings import LlmSettings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
VERSION_TABLE = "alembic_version_llm"


@dataclass
class ConversationsWiring:
    """The Conversations servicer and the resources behind it."""

    servicer: object
    engine: AsyncEngine
    store: ConversationStore
    _closers: list[object]

    def advertise(self, address: str) -> None:
        """The gRPC address this replica is reached at, recorded on the turns it runs."""
        self.store.runner = address

    async def prepare(self) -> None:
        """Wait for PostgreSQL and bring the llm service's tables to head."""
        await db.wait_for_database(self.engine)
        await db.run_migrations(self.engine, MIGRATIONS, VERSION_TABLE)

    async def close(self) -> None:
        for closer in self._closers:
            await closer.close()  # type: ignore[attr-defined]
        await self.engine.dispose()


def build_conversations(
    settings: LlmSettings,
    pool: ChannelPool,
    providers: ProviderSource,
    calls: ModelCalls,
    config: PluginConfigWatcher,
    engine: AsyncEngine | None = None,
) -> ConversationsWiring:
    """Everything the Conversations RPCs need; nothing connects until first use or ``prepare``."""
    from services.llm.conversations.analysis import Analyses
    from services.llm.conversations.attach import Attachments
    from services.llm.conversations.claims import PostClaims
    from services.llm.conversations.claimstore import ClaimStore
    from services.llm.conversations.peers import Peers
    from services.llm.conversations.reads import ConversationReader
    from services.llm.conversations.relay import AttachRelay
    from services.llm.conversations.responses import Responses
    from services.llm.conversations.runs import TurnRuns
    from services.llm.conversations.servicer import ConversationsServicer
    from services.llm.conversations.stops import StopWatcher

    engine = engine or db.create_engine(settings.database_url)
    store = ConversationStore(engine, settings.advertise_addr)
    mattermost = MattermostClient(settings.mattermost_url, settings.mattermost_token)
    stops = StopWatcher(store)
    runtime = Runtime(store, Peers(settings, pool, config), providers, calls, mattermost, stops)
    runs = TurnRuns(settings.turn_timeout_seconds)
    servicer = ConversationsServicer(
        Responses(runtime),
        Analyses(runtime),
        ConversationReader(runtime),
        runs,
        PostClaims(ClaimStore(engine)),
        Attachments(runs, store),
        AttachRelay(pool, settings.turn_timeout_seconds),
    )
    # Turns first: saving their partial answers needs the database and the stop watcher; then
    # the titles of ended turns, which are cancelled.
    return ConversationsWiring(servicer, engine, store, [runs, runtime, stops, _MattermostCloser(mattermost)])


class _MattermostCloser:
    def __init__(self, client: MattermostClient) -> None:
        self.client = client

    async def close(self) -> None:
        await self.client.aclose()
