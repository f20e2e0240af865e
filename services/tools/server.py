"""Wiring of the tools service: database, Mattermost, registry and index clients, servicer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.errors import UpstreamUnavailable
from services.common.grpc_client import ChannelPool, idempotent
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.http_guard import parse_allowed_hostnames
from services.common.mattermost import MattermostClient
from services.common.plugin_config import PluginConfigWatcher, follow_debug_logging
from services.common.settings import CommonSettings
from services.tools.config import LiveToolsConfig
from services.tools.execution import ToolService
from services.tools.mattermost_tools import MattermostTools
from services.tools.peers import IndexSemanticSearch, McpRemoteTools, RegistryAgents
from services.tools.servicer import ToolsServicer
from services.tools.settings import ToolsSettings
from services.tools.store import PolicyStore, SearchLedger
from services.tools.websearch import MAX_SEARCHES_PER_CONVERSATION
from services.tools.websearch.web_tools import OutboundLimits, WebTools

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_tools"
CONFIG_WAIT_SECONDS = 20.0

logger = logging.getLogger(__name__)


@dataclass
class ToolsDeps:
    """What the tools service talks to; tests pass their own, ``create_server`` builds the rest."""

    engine: AsyncEngine
    mattermost: MattermostClient
    channels: ChannelPool


class ToolsProcess:
    """The tools service wired: ``ToolsServicer`` over ``ToolService`` and its stores and peers."""

    def __init__(self, settings: ToolsSettings, deps: ToolsDeps) -> None:
        self.settings = settings
        self.deps = deps
        registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
        # The index process hosts both the registry and the index API: one channel serves both.
        channel = deps.channels.get(settings.index_addr, idempotent(registry_service))
        registry = registry_pb2_grpc.RegistryStub(channel)
        index = index_pb2_grpc.IndexStub(channel)
        mcp_service = mcp_pb2.DESCRIPTOR.services_by_name["MCP"]
        mcp = mcp_pb2_grpc.MCPStub(deps.channels.get(settings.mcp_addr, idempotent(mcp_service)))
        self.config = LiveToolsConfig()
        self.watcher = PluginConfigWatcher(registry)
        self.watcher.on_change(lambda change: self.config.update(change.config, change.license))
        follow_debug_logging(self.watcher)
        service = ToolService(
            policies=PolicyStore(deps.engine),
            agents=RegistryAgents(registry, deps.mattermost),
            config=self.config.current,
            mattermost=MattermostTools(deps.mattermost, IndexSemanticSearch(index)),
            web=WebTools(
                SearchLedger(deps.engine, max_searches=MAX_SEARCHES_PER_CONVERSATION),
                OutboundLimits(
                    private_allowed_hostnames=parse_allowed_hostnames(settings.private_allowed_hostnames),
                    max_response_bytes=settings.page_fetch_max_bytes,
                    total_timeout=settings.outbound_timeout_seconds,
                    page_max_chars=settings.page_fetch_max_chars,
                ),
            ),
            remote=McpRemoteTools(mcp),
        )
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name,
                    ToolsServicer(service),
                    tools_pb2_grpc.add_ToolsServicer_to_server,
                )
            ],
        )

    async def prepare(self) -> None:
        """Migrate the database and wait (a bounded time) for the plugin configuration."""
        await db.wait_for_database(self.deps.engine)
        await db.run_migrations(self.deps.engine, MIGRATIONS, VERSION_TABLE)
        await self.watcher.start()
        try:
            # Serve only once web search settings and the allowlist are known; without the
            # registry the Mattermost tools still work, so a slow registry only delays, not blocks.
            await self.watcher.wait_ready(CONFIG_WAIT_SECONDS)
        except UpstreamUnavailable:
            logger.warning("serving without the plugin configuration; web tools stay off until it arrives")

    async def close(self) -> None:
        """Stop watching the configuration; close channels, the Mattermost client and the pool."""
        await self.watcher.close()
        await self.deps.channels.close()
        await self.deps.mattermost.aclose()
        await self.deps.engine.dispose()


async def create_server(settings: CommonSettings, deps: ToolsDeps | None = None) -> ToolsProcess:
    """The tools service for ``settings`` (``ToolsSettings``), over ``deps`` or new ones."""
    assert isinstance(settings, ToolsSettings)
    deps = deps or ToolsDeps(
        engine=db.create_engine(settings.database_url, pool_size=settings.db_pool_size),
        mattermost=MattermostClient(settings.mattermost_url, settings.mattermost_token),
        channels=ChannelPool.from_settings(settings),
    )
    return ToolsProcess(settings, deps)
