"""Settings loading shared by every service: one frozen object, built once from the environment.

Each service declares a pydantic model of its settings. A field ``foo_bar`` is read from
``<PREFIX>FOO_BAR`` (the service's own prefix, e.g. ``AGENTS_LLM_``) and, for fields every service
shares, from ``AGENTS_FOO_BAR`` as a fallback. ``DATABASE_URL`` is read as is. Validation fails
with one error listing every missing or invalid variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SHARED_PREFIX = "AGENTS_"
# Read without a prefix: the conventional name platform tooling already sets.
UNPREFIXED = {"database_url": "DATABASE_URL"}


class SettingsError(Exception):
    """Raised at start-up with every bad variable named."""


class CommonSettings(BaseModel):
    """Fields every service has. Defaults work for a local run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service_name: str
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=0, ge=0, le=65535)
    database_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Shared credential services present to each other; empty disables the check (local runs).
    service_token: str = Field(default="", repr=False)
    # Seconds to drain in-flight calls and streams after SIGTERM before they are cancelled.
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # Seconds health reports NOT_SERVING before the server stops accepting calls, so that load
    # balancers and clients move away first.
    readiness_drain_seconds: float = Field(default=0.0, ge=0)
    # Seconds after which the server asks a client connection to go away (HTTP/2 GOAWAY), so
    # clients re-resolve and spread over replicas added since. Calls already running finish.
    grpc_max_connection_age_seconds: float = Field(default=300.0, gt=0)
    # uvloop (default) or asyncio's own loop (services/common/event_loop.py).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # off, logs (spans in the JSON log), otlp (gRPC exporter), file (JSON lines, used by tests).
    telemetry_output: Literal["off", "logs", "otlp", "file"] = "off"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    trace_file: str = ""
    # Prometheus text over HTTP (services/common/metrics.py); 0 turns the listener off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # Service addresses (host:port or dns:///name:port for client-side balancing).
    index_addr: str = "127.0.0.1:50054"
    llm_addr: str = "127.0.0.1:50051"
    tools_addr: str = "127.0.0.1:50052"
    mcp_addr: str = "127.0.0.1:50053"
    # Deadline of an outgoing call that sets none; what is left of the incoming call's deadline
    # bounds it either way.
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # Off when the addresses name a proxy that retries idempotent calls itself (the generated
    # Envoy config), so that a call is never retried by both.
    grpc_client_retries: bool = True
    # Mattermost's base URL and the token of the cluster's own account there (a bot or admin
    # account with permission to manage bots and read users/channels). Never sent to users.
    mattermost_url: str = "http://127.0.0.1:8065"
    mattermost_token: str = Field(default="", repr=False)


class WorkersSettings(CommonSettings):
    """A service that can run ``workers`` processes on one port (services/common/workers.py)."""

    # The service's variable prefix, and the fields of the address its workers share.
    env_prefix: ClassVar[str]
    listen_fields: ClassVar[tuple[str, str]] = ("grpc_host", "grpc_port")
    # Processes serving the port, each about one core at full load; above 1, a parent supervises them.
    workers: int = Field(default=1, ge=1, le=64)
    # Set by that parent in each worker (1..workers); 0 in a process started otherwise.
    worker_index: int = Field(default=0, ge=0)


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], prefix: str, environ: Mapping[str, str] | None = None, **fixed: object) -> S:
    """Build ``cls`` from ``environ`` (default ``os.environ``); ``fixed`` values win over the environment."""
    env = os.environ if environ is None else environ
    shared = set(CommonSettings.model_fields)
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name in cls.model_fields:
        if name in fixed:
            values[name] = fixed[name]
            continue
        candidates = [UNPREFIXED[name]] if name in UNPREFIXED else [f"{prefix}{name.upper()}"]
        if name in shared and name not in UNPREFIXED:
            candidates.append(f"{SHARED_PREFIX}{name.upper()}")
        for var in candidates:
            if var in env:
                values[name] = env[var]
                sources[name] = var
                break
        else:
            sources[name] = candidates[0]
    try:
        return cls.model_validate(values)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            field = str(item["loc"][0]) if item["loc"] else ""
            var = sources.get(field, field)
            problems.append(f"{var}: {item['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
