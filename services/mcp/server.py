"""Wiring of the mcp service: the registry's configuration feed, the remote servers' per-user
sessions and OAuth grants behind the MCP API with the sweep that closes idle sessions, and the
Mattermost MCP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.errors import UpstreamUnavailable
from services.common.grpc_client import ChannelPool, idempotent
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.http_guard import OutboundPolicy, parse_allowed_hostnames
from services.common.metrics import ServiceMetrics
from services.common.plugin_config import PluginConfigWatcher, follow_debug_logging
from services.common.settings import CommonSettings
from services.mcp.config import LiveMcpConfig, McpConfig
from services.mcp.embedded.exported import ExportedTools
from services.mcp.embedded.process import EmbeddedServer
from services.mcp.embedded.tools import TOOLS
from services.mcp.grants import GrantStore, TokenCipher
from services.mcp.metrics import McpMetrics
from services.mcp.oauth import BearerAuth, OAuthFlow
from services.mcp.remote import RemoteTools
from services.mcp.servicer import McpServicer
from services.mcp.sessions import SessionLimits, SessionManager
from services.mcp.settings import McpSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_mcp"
CONFIG_WAIT_SECONDS = 20.0
# Idle sessions are looked for this often at most (and at least four times per idle timeout).
MAX_SWEEP_INTERVAL_SECONDS = 30.0

logger = logging.getLogger(__name__)


class McpProcess:
    """The mcp service wired: the MCP API over the remote servers' sessions, and the embedded
    Mattermost MCP server."""

    def __init__(self, settings: McpSettings, channels: ChannelPool, engine: AsyncEngine) -> None:
        self.settings = settings
        self.channels = channels
        self.engine = engine
        registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
        registry = registry_pb2_grpc.RegistryStub(channels.get(settings.index_addr, idempotent(registry_service)))
        self.config = LiveMcpConfig()
        self.watcher = PluginConfigWatcher(registry)
        self.watcher.on_change(lambda change: self.config.update(change.config, change.license))
        follow_debug_logging(self.watcher)
        policy = _policy(settings, self.config)
        self.oauth = OAuthFlow(
            GrantStore(engine, TokenCipher(settings.token_key) if settings.token_key else None),
            self.config.current,
            policy,
            site_url=settings.public_site_url,
            state_ttl=settings.oauth_state_ttl_seconds,
            refresh_margin=settings.oauth_refresh_margin_seconds,
            timeout=settings.call_timeout_seconds,
        )
        self.sessions = _session_manager(settings, self.config, policy, self.oauth)
        self.metrics = McpMetrics()
        remote = RemoteTools(
            self.sessions,
            self.config.current,
            settings.call_timeout_seconds,
            settings.max_output_chars,
            self.metrics,
        )
        # The re-exported servers' tools run through the same sessions and grants as the agents'.
        self.embedded = EmbeddedServer(
            settings, ExportedTools(remote, self.config.current, self.oauth.start_url, reserved=TOOLS)
        )
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    mcp_pb2.DESCRIPTOR.services_by_name["MCP"].full_name,
                    # Only the remote-server RPCs are overridden; the stub marks the others abstract.
                    McpServicer(remote, self.oauth),  # type: ignore[abstract]
                    mcp_pb2_grpc.add_MCPServicer_to_server,
                ),
                self.embedded.binding(),
            ],
            metrics=ServiceMetrics(settings.service_name, self.metrics.registry),
        )
        self._sweeper: asyncio.Task[None] | None = None

    def idle_timeout(self) -> float:
        """Seconds of disuse after which a session closes: the setting, else the configuration's."""
        return self.settings.idle_timeout_seconds or self.config.current().idle_timeout_seconds

    async def prepare(self) -> None:
        """Migrate the database, start the embedded server, wait (a bounded time) for the plugin
        configuration; start the idle sweep."""
        await db.wait_for_database(self.engine)
        await db.run_migrations(self.engine, MIGRATIONS, VERSION_TABLE)
        await self.embedded.start()
        await self.watcher.start()
        try:
            await self.watcher.wait_ready(CONFIG_WAIT_SECONDS)
        except UpstreamUnavailable:
            logger.warning("serving without the plugin configuration; no remote MCP server until it arrives")
        self._sweeper = asyncio.create_task(self._sweep(), name="mcp-idle-sweep")

    async def _sweep(self) -> None:
        while True:
            timeout = self.idle_timeout()
            await asyncio.sleep(min(timeout / 4, MAX_SWEEP_INTERVAL_SECONDS))
            if closed := self.sessions.close_idle(timeout):
                logger.info("closed %d idle MCP sessions", closed)

    async def close(self) -> None:
        """Stop the sweep and the configuration watch, close every session, the embedded server and
        the channels."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.watcher.close()
        await self.sessions.close()
        await self.embedded.close()
        await self.channels.close()
        await self.engine.dispose()


def _policy(settings: McpSettings, config: LiveMcpConfig) -> Callable[[], OutboundPolicy]:
    private_allowed = parse_allowed_hostnames(settings.private_allowed_hostnames)

    def policy() -> OutboundPolicy:
        return OutboundPolicy(
            allowed_hostnames=config.current().allowed_upstream_hostnames,
            private_allowed_hostnames=private_allowed,
        )

    return policy


def _session_manager(
    settings: McpSettings, config: LiveMcpConfig, policy: Callable[[], OutboundPolicy], oauth: OAuthFlow
) -> SessionManager:
    sessions = SessionManager(
        SessionLimits(
            max_per_node=settings.max_sessions,
            max_per_user=settings.max_sessions_per_user,
            connect_timeout=settings.connect_timeout_seconds,
        ),
        policy,
        auth=lambda user_id, server: BearerAuth(oauth, user_id, server),
    )

    def drop_stale(old: McpConfig, new: McpConfig) -> None:
        # A server removed, disabled or edited: its sessions hold the old URL and headers.
        sessions.close_where(lambda server: not server.enabled or new.by_name(server.name) != server)

    config.on_change(drop_stale)
    return sessions


async def create_server(settings: CommonSettings) -> McpProcess:
    """The mcp service for ``settings`` (``McpSettings``)."""
    assert isinstance(settings, McpSettings)
    channels = ChannelPool(service_token=settings.service_token, default_timeout=settings.rpc_timeout_seconds)
    return McpProcess(settings, channels, db.create_engine(settings.database_url, pool_size=settings.db_pool_size))
