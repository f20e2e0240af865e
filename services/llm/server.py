"""Wiring of the llm service: provider session, registry client, servicers. No logic here."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

import aiohttp
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.grpc_client import ChannelPool, idempotent
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.http import new_client_session
from services.common.metrics import MetricsEndpoint
from services.common.plugin_config import PluginConfigSnapshot, PluginConfigWatcher
from services.common.settings import CommonSettings
from services.llm.catalog import ProviderCatalog
from services.llm.completion import CompletionService
from services.llm.conversations import build_conversations
from services.llm.metrics import LlmMetrics
from services.llm.providers import create_provider
from services.llm.providers.transcription import transcribe
from services.llm.registry_client import RegistryServiceSource
from services.llm.servicer import LLMServicer
from services.llm.settings import LlmSettings
from services.llm.usage_log import TokenUsageLog

logger = logging.getLogger(__name__)


@dataclass
class LlmDeps:
    """What the service is built from; tests may pass their own."""

    http: aiohttp.ClientSession
    channels: ChannelPool
    registry: registry_pb2_grpc.RegistryStub
    metrics: LlmMetrics
    usage_log: TokenUsageLog


def build_deps(settings: LlmSettings) -> LlmDeps:
    # One pooled session per process for every provider; trust_env honours HTTP(S)_PROXY. No
    # total timeout: streams last minutes, and the engine's stall watchdog bounds silence.
    http = new_client_session(total_timeout=None, pool_size=settings.provider_pool_size)
    channels = ChannelPool(service_token=settings.service_token, default_timeout=settings.rpc_timeout_seconds)
    registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
    registry = registry_pb2_grpc.RegistryStub(channels.get(settings.index_addr, idempotent(registry_service)))
    return LlmDeps(
        http=http,
        channels=channels,
        registry=registry,
        metrics=LlmMetrics(),
        usage_log=TokenUsageLog(settings.token_usage_log_path),
    )


class LlmProcess:
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
        )
        self.config = PluginConfigWatcher(deps.registry)
        self.config.on_change(self._config_changed)
        # The conversation loop (agents.llm.v1.Conversations) shares the channels, the providers,
        # the observed completion path (metrics, spans, usage log) and the live plugin config.
        self.conversations = build_conversations(settings, deps.channels, self.catalog, self.completions, self.config)
        self.metrics_endpoint = MetricsEndpoint(deps.metrics.registry, settings.metrics_port, settings.metrics_host)
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["LLM"].full_name,
                    LLMServicer(self.completions, functools.partial(transcribe, session=deps.http)),
                    llm_pb2_grpc.add_LLMServicer_to_server,
                ),
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["Conversations"].full_name,
                    self.conversations.servicer,
                    llm_pb2_grpc.add_ConversationsServicer_to_server,
                ),
            ],
        )

    def _config_changed(self, snapshot: PluginConfigSnapshot) -> None:
        # Services may have changed (keys, URLs, limits): providers are rebuilt on next use.
        self.catalog.invalidate()
        self.usage_logging = snapshot.config.enable_token_usage_logging
        if self.usage_logging:
            self.deps.usage_log.start()  # idempotent; creates the folder only once logging is on
        logger.info(
            "plugin configuration revision %s applied: token usage logging %s",
            snapshot.revision,
            "on" if self.usage_logging else "off",
        )

    async def prepare(self) -> None:
        # The host is bound by now (port 0 in tests picks one): other replicas relay Attach here.
        host = self.settings.grpc_host if self.settings.grpc_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        self.conversations.advertise(self.settings.advertise_addr or f"{host}:{self.host.port}")
        await self.conversations.prepare()
        self.metrics_endpoint.start()
        # Not awaited until ready: completions read services on demand, so the llm serves even
        # while the registry's config stream is still connecting.
        await self.config.start()

    async def close(self) -> None:
        # Running turns are cancelled first and save their partial answers while the database,
        # channels and provider session are still open.
        await self.conversations.close()
        await self.config.close()
        self.metrics_endpoint.stop()
        await self.deps.channels.close()
        await self.catalog.aclose()
        await self.deps.http.close()
        await asyncio.to_thread(self.deps.usage_log.close)


async def create_server(settings: CommonSettings, deps: LlmDeps | None = None) -> LlmProcess:
    assert isinstance(settings, LlmSettings)
    return LlmProcess(settings, deps or build_deps(settings))
