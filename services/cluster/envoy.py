"""The Envoy configuration of the cluster, generated from its settings (``envoy-config``).

One source: the same ``AGENTS_*_ADDR`` targets the services dial (``host:port``,
``dns:///name:port`` or ``ipv4:a:p,b:p``) plus a few ``AGENTS_ENVOY_*`` settings. Envoy then
- fronts the plugin routes (``/plugins/mattermost-ai/``) and balances each request over the
  gateway replicas; responses stream through unbuffered (SSE, streamable HTTP) with no overall
  route timeout, only an idle one;
- listens once per gRPC service and balances each call over its replicas (HTTP/2), with active
  ``grpc.health.v1`` checks and outlier detection. Only the idempotent unary methods (the
  clients' own list, ``grpc_client.idempotent``) are retried; streams never are. Services that
  dial through Envoy run with ``AGENTS_GRPC_CLIENT_RETRIES=false`` so retries never stack;
- traces to the OTLP collector when ``AGENTS_TELEMETRY_OUTPUT=otlp``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from agents.index.v1 import index_pb2
from agents.llm.v1 import llm_pb2
from agents.mcp.v1 import mcp_pb2
from agents.registry.v1 import registry_pb2
from agents.tools.v1 import tools_pb2
from pydantic import Field

from services.common.grpc_client import idempotent
from services.common.settings import CommonSettings, SettingsError, load_settings

PLUGIN_PREFIX = "/plugins/mattermost-ai/"
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
_OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
# What each service's listener serves: the proto services whose idempotent methods may be retried.
SERVICES = {
    "index": (registry_pb2.DESCRIPTOR.services_by_name["Registry"], index_pb2.DESCRIPTOR.services_by_name["Index"]),
    "llm": (llm_pb2.DESCRIPTOR.services_by_name["LLM"], llm_pb2.DESCRIPTOR.services_by_name["Conversations"]),
    "tools": (tools_pb2.DESCRIPTOR.services_by_name["Tools"],),
    "mcp": (mcp_pb2.DESCRIPTOR.services_by_name["MCP"],),
}
# Failures after which no replica has seen the request: retried for any call, never twice over.
_NOT_SENT = "connect-failure,refused-stream,reset-before-request"


class EnvoySettings(CommonSettings):
    """Where Envoy listens; the upstreams come from the shared ``AGENTS_*_ADDR`` targets."""

    listen_host: str = "127.0.0.1"
    front_port: int = Field(default=10000, ge=1, le=65535)
    admin_port: int = Field(default=9901, ge=1, le=65535)
    # The gateway replicas, same target syntax as the gRPC addresses.
    gateway_addr: str = "127.0.0.1:8700"
    # Envoy's own gRPC listener for each service: what AGENTS_*_ADDR name when dialling through it.
    index_port: int = Field(default=15054, ge=1, le=65535)
    llm_port: int = Field(default=15051, ge=1, le=65535)
    tools_port: int = Field(default=15052, ge=1, le=65535)
    mcp_port: int = Field(default=15053, ge=1, le=65535)
    # A stream (an SSE answer, a gRPC stream) is cut only after this long without a byte.
    stream_idle_timeout_seconds: int = Field(default=3600, ge=1)


def load(environ: Mapping[str, str] | None = None) -> EnvoySettings:
    """Envoy's settings from the environment (``AGENTS_ENVOY_*``, then the shared ``AGENTS_*``)."""
    return load_settings(EnvoySettings, "AGENTS_ENVOY_", environ, service_name="envoy")


@dataclass(frozen=True)
class Endpoint:
    """One upstream address: an IP (a fixed replica) or a name resolved to every replica."""

    host: str
    port: int


def endpoints(variable: str, target: str) -> list[Endpoint]:
    """The endpoints of the target in ``variable``: ``host:port``, ``dns:///host:port`` or
    ``ipv4:a:p,b:p`` (SettingsError naming the variable otherwise)."""
    if target.startswith("ipv4:"):
        addresses = target.removeprefix("ipv4:").split(",")
    elif target.startswith("dns:"):
        addresses = [target.removeprefix("dns:").lstrip("/").rsplit("/", 1)[-1]]
    else:
        addresses = [target]
    found = []
    for address in addresses:
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(
                f"invalid configuration:\n  {variable}: {target!r} is not host:port, dns:///host:port"
                " or ipv4:host:port,host:port"
            )
        found.append(Endpoint(host.strip("[]"), int(port)))
    return found


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _cluster(name: str, upstream: list[Endpoint], *, grpc: bool, replicas: bool = True) -> dict[str, Any]:
    """A round-robin cluster; a name resolves to every replica (a headless Service), re-resolved.
    Replicas are health-checked and ejected when failing; another upstream (the collector) is not."""
    static = all(_is_ip(e.host) for e in upstream)
    protocol: dict[str, Any] = {"http2_protocol_options": {}} if grpc else {"http_protocol_options": {}}
    check = {"grpc_health_check": {}} if grpc else {"http_health_check": {"path": "/readyz"}}
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": _HTTP_OPTIONS,
                "explicit_http_config": protocol,
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(e.host, e.port)}} for e in upstream]}],
        },
    }
    if not replicas:
        return cluster
    # A replica that stops answering its health check (draining, dead) gets no new requests.
    cluster |= {
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "2s",
                "unhealthy_threshold": 2,
                "healthy_threshold": 1,
                "no_traffic_interval": "2s",
                **check,
            }
        ],
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 3,
            "interval": "5s",
            "base_ejection_time": "15s",
            "max_ejection_percent": 50,
        },
        # One replica failing its checks must not leave the others idle behind the panic threshold.
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
    }
    return cluster


def _connection_manager(
    name: str, routes: list[dict[str, Any]], settings: EnvoySettings, *, grpc: bool
) -> dict[str, Any]:
    idle = f"{settings.stream_idle_timeout_seconds}s"
    manager: dict[str, Any] = {
        "@type": _HCM,
        "stat_prefix": name,
        "codec_type": "HTTP2" if grpc else "AUTO",
        "stream_idle_timeout": idle,
        "request_timeout": "0s",  # an upload or a stream may take long; idleness is what counts
        "route_config": {"name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    if settings.telemetry_output == "otlp":
        manager["tracing"] = {
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": _OTEL,
                    "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "1s"},
                    "service_name": f"envoy-{name}",
                },
            }
        }
    return manager


def _listener(name: str, port: int, manager: dict[str, Any], settings: EnvoySettings) -> dict[str, Any]:
    return {
        "name": name,
        "address": _socket(settings.listen_host, port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def _front_routes(settings: EnvoySettings) -> list[dict[str, Any]]:
    return [
        {
            "match": {"prefix": PLUGIN_PREFIX},
            "route": {
                "cluster": "gateway",
                "timeout": "0s",  # no overall limit: an SSE answer lasts as long as the model writes
                "idle_timeout": f"{settings.stream_idle_timeout_seconds}s",
                "retry_policy": {"retry_on": _NOT_SENT, "num_retries": 2},
            },
        }
    ]


def _grpc_routes(service: str, methods: Iterable[tuple[str, str]], settings: EnvoySettings) -> list[dict[str, Any]]:
    """Per idempotent unary method a retrying route; everything else (streams, writes) none."""
    idle = f"{settings.stream_idle_timeout_seconds}s"
    # The caller's grpc-timeout is the deadline: Envoy adds none of its own.
    action = {
        "cluster": service,
        "timeout": "0s",
        "idle_timeout": idle,
        "max_stream_duration": {"grpc_timeout_header_max": "0s"},
    }
    routes = [
        {
            "match": {"path": f"/{svc}/{method}", "grpc": {}},
            "route": {
                **action,
                "retry_policy": {
                    "retry_on": f"unavailable,{_NOT_SENT}",
                    "num_retries": 2,
                    "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
                    "retry_host_predicate": [
                        {
                            "name": "envoy.retry_host_predicates.previous_hosts",
                            "typed_config": {"@type": _PREVIOUS_HOSTS},
                        }
                    ],
                },
            },
        }
        for svc, method in methods
    ]
    return [*routes, {"match": {"prefix": "/"}, "route": action}]


def build(settings: EnvoySettings) -> dict[str, Any]:
    """The whole Envoy bootstrap for ``settings`` (a plain dict, YAML- and JSON-ready)."""
    ports = {name: getattr(settings, f"{name}_port") for name in SERVICES}
    listeners = [
        _listener(
            "front",
            settings.front_port,
            _connection_manager("front", _front_routes(settings), settings, grpc=False),
            settings,
        )
    ]
    clusters = [_cluster("gateway", endpoints("AGENTS_ENVOY_GATEWAY_ADDR", settings.gateway_addr), grpc=False)]
    for name, descriptors in SERVICES.items():
        methods = [m for d in descriptors for m in idempotent(d)]
        manager = _connection_manager(name, _grpc_routes(name, methods, settings), settings, grpc=True)
        listeners.append(_listener(name, ports[name], manager, settings))
        upstream = endpoints(f"AGENTS_{name.upper()}_ADDR", getattr(settings, f"{name}_addr"))
        clusters.append(_cluster(name, upstream, grpc=True))
    if settings.telemetry_output == "otlp":
        collector = endpoints("AGENTS_OTLP_ENDPOINT", settings.otlp_endpoint.split("://", 1)[-1])
        clusters.append(_cluster("otlp", collector, grpc=True, replicas=False))
    return {
        "admin": {"address": _socket(settings.listen_host, settings.admin_port)},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def render(settings: EnvoySettings) -> str:
    """The configuration as YAML (what ``envoy -c`` reads)."""
    return yaml.safe_dump(build(settings), sort_keys=False)
