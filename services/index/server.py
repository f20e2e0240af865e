"""Wiring of the index service: database, registry, servicers. No logic here."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.http_guard import OutboundPolicy, parse_allowed_hostnames
from services.common.licensing import License
from services.common.mattermost import MattermostClient
from services.common.metrics import ServiceMetrics
from services.common.settings import CommonSettings
from services.common.telemetry import LiveLogLevel
from services.index.registry.active_agents import ActiveAgents
from services.index.registry.agent_registry import AgentRegistry
from services.index.registry.bot_accounts import BotAccounts
from services.index.registry.change_listener import ChangeListener
from services.index.registry.config_feed import ConfigFeed
from services.index.registry.config_registry import ConfigRegistry
from services.index.registry.config_store import ConfigStore
from services.index.registry.legacy_bots import migrate_legacy_bots
from services.index.registry.license_watch import LicenseWatch
from services.index.registry.messages import PLUGIN_CONFIG_KEYS
from services.index.registry.prompts import PromptLibrary
from services.index.registry.servicer import RegistryServicer
from services.index.registry.store import AgentStore
from services.index.registry.user_preferences import UserToolPreferences
from services.index.reindex.metrics import ReindexGauges
from services.index.reindex.runner import Reindexer, ReindexSettings
from services.index.reindex.store import JobStore
from services.index.search.metrics import SearchMetrics
from services.index.search.semantic import MattermostMembership, ScanBounds, SemanticIndex
from services.index.search.servicer import IndexServicer
from services.index.search.setup import ConfiguredSetup
from services.index.search.store import VectorStore
from services.index.settings import IndexSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_index"


@dataclass
class IndexDeps:
    """What the index service talks to; tests pass their own, ``create_server`` builds the rest."""

    engine: AsyncEngine
    mattermost: MattermostClient


class IndexProcess:
    """The index process wired: the agent registry's servicer and the semantic index's."""

    def __init__(self, settings: IndexSettings, deps: IndexDeps) -> None:
        self.settings = settings
        self.deps = deps
        self.config_store = ConfigStore(deps.engine)
        self.agent_store = AgentStore(deps.engine)
        self.bots = BotAccounts(deps.mattermost)
        self.listener = ChangeListener(settings.database_url)
        self.feed = ConfigFeed(self.config_store, self.listener)
        override = License.parse(settings.license) if settings.license.strip() else None
        self.license = LicenseWatch(deps.mattermost, self.feed, override, settings.license_refresh_seconds)
        self._debug_logging: asyncio.Task[None] | None = None
        active = ActiveAgents(self.agent_store, self.listener, max_age=settings.agents_cache_seconds)
        self.config = ConfigRegistry(self.config_store, self.feed, self.agent_store, PLUGIN_CONFIG_KEYS)
        agents = AgentRegistry(self.agent_store, active, self.config, self.bots)
        policy = OutboundPolicy(private_allowed_hostnames=parse_allowed_hostnames(settings.embedding_private_hostnames))
        self.search_setup = ConfiguredSetup(self.config, policy)
        bounds = ScanBounds(settings.search_exact_scan_rows, settings.search_max_scan_tuples, settings.search_ef_search)
        membership = MattermostMembership(deps.mattermost)
        self.semantic = SemanticIndex(VectorStore(deps.engine), self.search_setup, bounds, membership)
        reindex = ReindexSettings(
            node_id=f"{socket.gethostname()}-{os.getpid()}",
            lease_seconds=settings.reindex_lease_seconds,
            page_size=settings.reindex_page_size,
            retry_seconds=settings.reindex_retry_seconds,
            defer_hnsw=settings.reindex_defer_hnsw,
            workers=settings.reindex_workers,
        )
        metrics = ServiceMetrics(settings.service_name)
        self.reindexer = Reindexer(
            JobStore(deps.engine), self.semantic, deps.mattermost, reindex, ReindexGauges(metrics.registry)
        )
        self._orphans: asyncio.Task[None] | None = None
        search_metrics = SearchMetrics(metrics.registry)
        index = IndexServicer(self.semantic, self.reindexer, search_metrics)
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
                    RegistryServicer(
                        self.config,
                        agents,
                        PromptLibrary(deps.engine),
                        self.semantic.ready,
                        UserToolPreferences(deps.engine),
                    ),
                    registry_pb2_grpc.add_RegistryServicer_to_server,
                ),
                ServicerBinding(
                    index_pb2.DESCRIPTOR.services_by_name["Index"].full_name,
                    index,
                    index_pb2_grpc.add_IndexServicer_to_server,
                ),
            ],
            metrics=metrics,
        )
        self.host.on_drain.append(self.feed.end_subscriptions)

    async def prepare(self) -> None:
        """Migrate, seed the plugin configuration, adopt legacy bots, read the license, and start
        change listening, debug logging and the watch for orphaned reindex jobs."""
        await db.wait_for_database(self.deps.engine)
        await db.run_migrations(self.deps.engine, MIGRATIONS, VERSION_TABLE)
        await self.config.seed(self.settings.config_seed_file)
        await migrate_legacy_bots(self.config_store, self.agent_store, self.bots)
        await self.feed.refresh()
        await self.license.start()
        await self.listener.start()
        self._debug_logging = asyncio.create_task(self._follow_debug_logging(), name="debug-logging")
        if self.settings.reindex_backend == "kubernetes":
            # Here, not in __init__: reindex workers (the Job's pods) build this process too and
            # have neither the template nor the API access.
            # Imported here: the Kubernetes client costs about a CPU second to import, which
            # every other index start (and every test cluster) would pay for nothing.
            from services.index.reindex.kubernetes_jobs import KubernetesJobs

            self.reindexer.kubernetes = await KubernetesJobs.create(self.settings)
        self._orphans = asyncio.create_task(self.reindexer.watch_orphans(), name="reindex-orphans")

    async def _follow_debug_logging(self) -> None:
        # The registry's own feed: the configuration this process serves, without a gRPC round trip.
        level = LiveLogLevel()
        async for revision, _license in self.feed.subscribe():
            level.apply(bool(revision.config.get("enableDebugLogging")))

    async def close(self) -> None:
        """Stop following and listening for changes, reading the license and the reindex jobs
        (another replica resumes them); close the embedder, the Mattermost client and the pool."""
        tasks = [task for task in (self._debug_logging, self._orphans) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.listener.close()
        await self.license.close()
        await self.reindexer.close()
        await self.search_setup.close()
        await self.deps.mattermost.aclose()
        await self.deps.engine.dispose()


async def create_server(settings: CommonSettings, deps: IndexDeps | None = None) -> IndexProcess:
    """The index process for ``settings`` (``IndexSettings``), over ``deps`` or new ones."""
    assert isinstance(settings, IndexSettings)
    deps = deps or IndexDeps(
        engine=db.create_engine(settings.database_url, pool_size=settings.db_pool_size),
        mattermost=MattermostClient(settings.mattermost_url, settings.mattermost_token),
    )
    return IndexProcess(settings, deps)
