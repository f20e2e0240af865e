"""Wiring and lifecycle of the gateway: HTTP server, backends, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.http import new_client_session
from services.common.mattermost import MattermostClient
from services.common.metrics import MetricsEndpoint, ServiceMetrics
from services.common.plugin_config import PluginConfigWatcher, follow_debug_logging
from services.gateway.agent_directory import AgentDirectory
from services.gateway.app import create_app
from services.gateway.auth import Authenticator
from services.gateway.backends import Backends
from services.gateway.bot_tokens import BotTokens
from services.gateway.conversations.runner import TRIGGERS, ConversationTriggers
from services.gateway.deps import DEPS, GatewayDeps
from services.gateway.http_server import GatewayRunner
from services.gateway.rendering.live import LiveReplies
from services.gateway.rendering.writer import ReplyWriter
from services.gateway.replies import ReplyService
from services.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

# The end of the shutdown grace kept for marking the replies still streaming (at most this, or a
# quarter of the grace): writing their posts and handing their claims back.
MARK_SECONDS = 2.0


def build_deps(settings: GatewaySettings) -> GatewayDeps:
    """Everything the gateway shares, built from its settings (nothing connects yet)."""
    http = new_client_session(total_timeout=30.0)
    mattermost = MattermostClient(settings.mattermost_url, settings.mattermost_token, session=http)
    backends = Backends(settings)
    plugin_config = PluginConfigWatcher(backends.registry)
    follow_debug_logging(plugin_config)
    replica_id = settings.replica_id or secrets.token_hex(8)
    if settings.replica_id and settings.worker_index:
        # Each worker claims posts as a replica of its own (conversations/claims.py).
        replica_id = f"{replica_id}-{settings.worker_index}"
    tokens = BotTokens(mattermost, f"agents-gateway {replica_id}")
    writer = ReplyWriter(LiveReplies(), settings.patch_interval_seconds)
    return GatewayDeps(
        settings=settings,
        http=http,
        mattermost=mattermost,
        backends=backends,
        authenticator=Authenticator(settings, mattermost, http),
        plugin_config=plugin_config,
        replica_id=replica_id,
        bot_tokens=tokens,
        directory=AgentDirectory(backends, settings.agents_refresh_seconds),
        replies=ReplyService(settings.mattermost_url, http, tokens, plugin_config, writer),
    )


async def _serving(deps: GatewayDeps, address: str) -> bool:
    channel = deps.backends.pool.get(address)
    try:
        # types-grpcio-health-checking's HealthStub declares no RPC attributes.
        check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
        reply: health_pb2.HealthCheckResponse = await check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.aio.AioRpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def readyz(request: web.Request) -> web.Response:
    """Ready when the registry and the llm service answer SERVING: without the registry no route
    can be served, without the llm service no conversation. Asking over the gateway's own
    channels also means they are connected (not backing off) once the gateway says ready."""
    deps = request.app[DEPS]
    serving = await _serving(deps, deps.settings.index_addr) and await _serving(deps, deps.settings.llm_addr)
    return web.json_response({"status": "ready" if serving else "not ready"}, status=200 if serving else 503)


class GatewayProcess:
    """One gateway: the HTTP server, its conversation side and their lifecycle."""

    def __init__(self, settings: GatewaySettings, deps: GatewayDeps) -> None:
        self.settings = settings
        self.deps = deps
        metrics = ServiceMetrics(settings.service_name)
        self.metrics_endpoint = MetricsEndpoint(metrics.registry, settings.metrics_port, settings.metrics_host)
        self.app = create_app(deps, metrics.registry)
        self.app.router.add_get("/readyz", readyz)
        self.triggers = ConversationTriggers(deps)
        self.app[TRIGGERS] = self.triggers
        self.runner = GatewayRunner(self.app, shutdown_timeout=settings.shutdown_grace_seconds, access_log=None)
        self.port = 0
        self._stop = asyncio.Event()

    async def start(self) -> int:
        """Listen for HTTP, then start the configuration watch, the bot sockets (``listen_for_posts``)
        and the agent reloads; returns the bound port."""
        await self.runner.setup()
        # Workers share the port (services/common/workers.py); a lone gateway keeps it to itself.
        shared = bool(self.settings.worker_index)
        site = web.TCPSite(self.runner, self.settings.http_host, self.settings.http_port, reuse_port=shared)
        await site.start()
        # The bound address: the port the OS chose when http_port is 0.
        port: int = self.runner.addresses[0][1]
        self.port = port
        logger.info("HTTP listening on %s:%d", self.settings.http_host, self.port)
        self.metrics_endpoint.start()
        await self.deps.plugin_config.start()
        if self.settings.listen_for_posts:
            await self.triggers.start()
        await self.deps.directory.start()
        return self.port

    async def stop(self) -> None:
        """Drain within the shutdown grace: stop listening, finish or mark the replies, close everything."""
        grace = self.settings.shutdown_grace_seconds
        mark = min(MARK_SECONDS, grace / 4)
        await self.triggers.stop_listening()
        # Within one grace period: cleanup stops accepting and lets in-flight requests (and SSE
        # streams) finish, while the replies being rendered keep streaming into their posts; those
        # still streaming near its end are marked (and their claims handed back) instead.
        await asyncio.gather(self.runner.cleanup(), self.deps.replies.drain(grace - mark, mark))
        await self.triggers.stop()
        await self.deps.close()
        self.metrics_endpoint.stop()
        logger.info("stopped")

    async def run(self) -> None:
        """Start, then serve until SIGTERM or SIGINT, then stop."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._stop.wait()
            logger.info("stop signal received")
        finally:
            await self.stop()
