"""Wiring of the llm service: database, provider session, registry and tools clients, the LLM and
Conversations servicers and what they are built from. No logic here."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.grpc_client import ChannelPool, idempotent
from services.common.grpc_server import GrpcServiceHost, ServicerBinding, bind
from services.common.http import new_client_session
from services.common.http_guard import UpstreamAllowlist
from services.common.mattermost.client import MattermostClient
from services.common.metrics import ServiceMetrics
from services.common.plugin_config import PluginConfigSnapshot, PluginConfigWatcher, follow_debug_logging
from services.common.settings import CommonSettings
from services.llm.catalog import ProviderCatalog
from services.llm.completion import CompletionService
from services.llm.conversations.actions import ActionTurns
from services.llm.conversations.agent_registry import AgentRegistry
from services.llm.conversations.agent_tools import AgentTools
from services.llm.conversations.analysis import Analyses
from services.llm.conversations.answers import PostAnswers
from services.llm.conversations.attach import Attachments
from services.llm.conversations.bridge import BridgeTools
from services.llm.conversations.claims import PostClaimLeases
from services.llm.conversations.claimstore import ClaimStore
from services.llm.conversations.composition import ConversationComposition
from services.llm.conversations.meetings import MeetingSummaries
from services.llm.conversations.reads import ConversationReader
from services.llm.conversations.relay import AttachRelay
from services.llm.conversations.runs import TurnRuns
from services.llm.conversations.servicer import ConversationsServicer
from services.llm.conversations.stops import StopWatcher
from services.llm.conversations.store import ConversationStore
from services.llm.conversations.turns import AgentTurns
from services.llm.metrics import LlmMetrics
from services.llm.provider_trace import ProviderTrace
from services.llm.providers import create_provider
from services.llm.providers.transcription import transcribe
from services.llm.registry_client import RegistryServiceSource
from services.llm.servicer import LLMServicer
from services.llm.settings import LlmSettings
from services.llm.usage_log import TokenUsageLog

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version_llm"


@dataclass
class LlmDeps:
    """What the service is built from; tests may pass their own. Nothing connects before use or
    ``prepare``."""

    engine: AsyncEngine
    http: aiohttp.ClientSession
    channels: ChannelPool
    registry: registry_pb2_grpc.RegistryAsyncStub
    tools: tools_pb2_grpc.ToolsAsyncStub
    mattermost: MattermostClient
    metrics: LlmMetrics
    usage_log: TokenUsageLog
    # Every request of ``http`` passes these: the plugin configuration's allowedUpstreamHostnames
    # and its LLM Trace, both updated live.
    allowlist: UpstreamAllowlist
    trace: ProviderTrace


def build_deps(settings: LlmSettings) -> LlmDeps:
    """The service's clients and stores from its settings; nothing connects yet."""
    # One pooled session per process for every provider; trust_env honours HTTP(S)_PROXY. No
    # total timeout: streams last minutes, and the engine's stall watchdog bounds silence. The
    # allowlist comes first: a refused request is never sent, so never traced either.
    allowlist, trace = UpstreamAllowlist(), ProviderTrace()
    http = new_client_session(total_timeout=None, pool_size=settings.provider_pool_size, middlewares=(allowlist, trace))
    channels = ChannelPool.from_settings(settings)
    registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
    tools_service = tools_pb2.DESCRIPTOR.services_by_name["Tools"]
    return LlmDeps(
        engine=db.create_engine(settings.database_url),
        http=http,
        channels=channels,
        registry=registry_pb2_grpc.RegistryStub(channels.get(settings.index_addr, idempotent(registry_service))),
        tools=tools_pb2_grpc.ToolsStub(channels.get(settings.tools_addr, idempotent(tools_service))),
        mattermost=MattermostClient(settings.mattermost_url, settings.mattermost_token),
        metrics=LlmMetrics(),
        usage_log=TokenUsageLog(settings.token_usage_log_path),
        allowlist=allowlist,
        trace=trace,
    )


class LlmProcess:
    """The llm service wired: the LLM and Conversations servicers over the completions, the loop and their stores."""

    def __init__(self, settings: LlmSettings, deps: LlmDeps) -> None:
        self.settings = settings
        self.deps = deps
        self.catalog = ProviderCatalog(
            RegistryServiceSource(deps.registry),
            lambda service: create_provider(service, deps.http),
            # Dropped providers are closed once no turn started before the change can still run.
            close_grace=settings.turn_timeout_seconds,
        )
        self.usage_logging = False
        self.completions = CompletionService(
            self.catalog,
            deps.metrics,
            usage_log=deps.usage_log,
            usage_logging_enabled=lambda: self.usage_logging,
            o200k_file=settings.o200k_file,
            trace=deps.trace,
        )
        self.config = PluginConfigWatcher(deps.registry)
        self.config.on_change(self._config_changed)
        follow_debug_logging(self.config)
        # The conversation loop (agents.llm.v1.Conversations) shares the channels, the providers,
        # the observed completion path (metrics, spans, usage log) and the live plugin config.
        self.store = ConversationStore(deps.engine)
        self.stops = StopWatcher(self.store)
        self.turns = AgentTurns(
            self.store,
            AgentRegistry(deps.registry, self.config),
            AgentTools(deps.tools),
            self.catalog,
            self.completions,
            deps.mattermost,
            self.stops,
        )
        self.runs = TurnRuns(settings.turn_timeout_seconds)
        actions = ActionTurns(self.turns)
        analyses = Analyses(self.turns, actions, MeetingSummaries(self.turns, actions))
        answers = PostAnswers(self.turns, analyses)
        reader = ConversationReader(self.store, deps.mattermost)
        conversations = ConversationsServicer(
            answers,
            analyses,
            reader,
            self.runs,
            PostClaimLeases(ClaimStore(deps.engine)),
            Attachments(self.runs, self.store),
            AttachRelay(deps.channels, settings.turn_timeout_seconds),
            ConversationComposition(reader, answers),
        )
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["LLM"].full_name,
                    LLMServicer(
                        self.completions,
                        functools.partial(transcribe, session=deps.http),
                        BridgeTools(self.turns),
                        coalesce_window=settings.stream_coalesce_ms / 1000,
                    ),
                    llm_pb2_grpc.add_LLMServicer_to_server,
                ),
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["Conversations"].full_name,
                    conversations,
                    llm_pb2_grpc.add_ConversationsServicer_to_server,
                ),
            ],
            metrics=ServiceMetrics(settings.service_name, deps.metrics.registry),
        )
        # A worker's own port, for the Attach relay (see LlmSettings.worker_ports_from).
        self.worker_port = 0
        if settings.worker_index:
            own = settings.worker_ports_from and settings.worker_ports_from + settings.worker_index - 1
            self.worker_port = bind(self.host.server, settings.grpc_host, own)

    def _config_changed(self, snapshot: PluginConfigSnapshot) -> None:
        # Services may have changed (keys, URLs, limits): providers are rebuilt on next use.
        self.catalog.invalidate()
        self.deps.allowlist.update(snapshot.config.allowed_upstream_hostnames)
        self.deps.trace.enabled = snapshot.config.enable_llm_trace
        self.usage_logging = snapshot.config.enable_token_usage_logging
        if self.usage_logging:
            self.deps.usage_log.start()  # idempotent; creates the folder only once logging is on
        logger.info(
            "plugin configuration revision %s applied: token usage logging %s, LLM trace %s",
            snapshot.revision,
            "on" if self.usage_logging else "off",
            "on" if self.deps.trace.enabled else "off",
        )

    async def prepare(self) -> None:
        """Record this replica's address, migrate the database and start the configuration watch."""
        # The host is bound by now (port 0 in tests picks one): other replicas relay Attach here.
        host = self.settings.grpc_host if self.settings.grpc_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        advertised = self.settings.advertise_addr or f"{host}:{self.host.port}"
        if self.worker_port:  # the shared port reaches any worker: this one's own port instead
            advertised = f"{advertised.rpartition(':')[0]}:{self.worker_port}"
        self.store.runner = advertised
        await db.wait_for_database(self.deps.engine)
        await db.run_migrations(self.deps.engine, MIGRATIONS, VERSION_TABLE)
        # Not awaited until ready: completions read services on demand, so the llm serves even
        # while the registry's config stream is still connecting.
        await self.config.start()

    async def close(self) -> None:
        """Cancel running turns (they save their partial answers), then close the watchers, clients and stores."""
        # Running turns are cancelled first and save their partial answers while the database,
        # the stop watcher, channels and provider session are still open; then the titles of
        # ended turns are cancelled.
        await self.runs.close()
        await self.turns.close()
        await self.stops.close()
        await self.deps.mattermost.aclose()
        await self.deps.engine.dispose()
        await self.config.close()
        await self.deps.channels.close()
        await self.catalog.aclose()
        await self.deps.http.close()
        await asyncio.to_thread(self.deps.usage_log.close)


async def create_server(settings: CommonSettings, deps: LlmDeps | None = None) -> LlmProcess:
    """The llm service for ``settings`` (``LlmSettings``), over ``deps`` or new ones."""
    assert isinstance(settings, LlmSettings)
    return LlmProcess(settings, deps or build_deps(settings))
