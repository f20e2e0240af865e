"""Settings of the llm service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from services.common.settings import WorkersSettings, load_settings
from services.llm.usage_log import DEFAULT_PATH

PREFIX = "AGENTS_LLM_"


class LlmSettings(WorkersSettings):
    """``AGENTS_LLM_*``: the ports, the provider pool, the turn timeout and the token usage log."""

    env_prefix: ClassVar[str] = PREFIX

    service_name: str = "llm"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    # Where token usage records go when the plugin config's enableTokenUsageLogging is on ("-": stdout).
    token_usage_log_path: str = DEFAULT_PATH
    # A local o200k_base.tiktoken for exact counts of o200k models (cl100k is used without it).
    o200k_file: str = ""
    # Connections the provider session keeps per process (shared by every service and stream).
    provider_pool_size: int = Field(default=1000, ge=1)
    # Longest a conversation turn may run (it runs on even when its caller went away).
    turn_timeout_seconds: float = Field(default=900.0, gt=0)
    # After a stream's first event, at most one StreamComplete message per this many ms: fewer,
    # larger messages cut the per-message gRPC cost that dominated the service's CPU. 0: each
    # message carries what was ready when the previous one was sent.
    stream_coalesce_ms: float = Field(default=20.0, ge=0, le=1000)
    # host:port other llm replicas reach this one at, to relay an Attach to the replica running
    # the turn (on Kubernetes: the pod IP and gRPC port). "" means grpc_host and the bound port.
    advertise_addr: str = ""
    # With several workers, each also listens on a port of its own (worker k on this + k - 1; an
    # OS-chosen one when 0), advertised instead: the shared port reaches any of them.
    worker_ports_from: int = Field(default=0, ge=0, le=65535)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> LlmSettings:
    """The llm service's settings from ``AGENTS_LLM_*`` (and shared ``AGENTS_*``) variables."""
    return load_settings(LlmSettings, PREFIX, environ, **fixed)
