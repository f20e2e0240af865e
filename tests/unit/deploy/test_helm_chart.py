"""The Helm chart renders every ci/*-values.yaml with Helm's own engine into valid Kubernetes objects."""

from __future__ import annotations

from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "mattermost-agents"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def render(values_file: Path) -> list[dict]:
    values = yaml.safe_load(values_file.read_text()) or {}
    chart = helm_python.Chart.load(str(CHART))
    try:
        manifests = chart.render(values, name="agents", namespace="chat")
    finally:
        chart.close()
    docs = []
    for text in manifests.values():
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def test_the_chart_lints_clean() -> None:
    result = helm_python.lint(str(CHART), strict=True)
    assert not result.get("errors"), result


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_ci_values_file_renders_valid_kubernetes_objects(values_file: Path) -> None:
    docs = render(values_file)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33", strict=True)


def test_each_enabled_component_gets_a_deployment_with_hardened_pods_and_native_grpc_probes() -> None:
    docs = render(CHART / "ci" / "default-values.yaml")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {f"agents-mattermost-agents-{c}" for c in ("gateway", "llm", "tools", "mcp", "index")}
    llm = deployments["agents-mattermost-agents-llm"]["spec"]["template"]["spec"]
    container = llm["containers"][0]
    assert container["readinessProbe"]["grpc"]["port"] == 50051
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert llm["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENTS_INDEX_ADDR"]["value"].startswith("dns:///agents-mattermost-agents-index-headless.chat.")
    assert "secretKeyRef" in env["AGENTS_MATTERMOST_TOKEN"]["valueFrom"]
    # Attach is relayed to the replica running a turn, so each llm pod advertises its own address.
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["AGENTS_LLM_ADVERTISE_ADDR"]["value"] == "$(POD_IP):50051"


def test_a_disabled_component_renders_nothing() -> None:
    docs = render(CHART / "ci" / "small-values.yaml")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-mcp")]


def test_every_mcp_replica_seals_sessions_with_the_key_from_one_secret() -> None:
    docs = render(CHART / "ci" / "default-values.yaml")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    env_of = {
        name: {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        for name, d in deployments.items()
    }
    key = env_of["agents-mattermost-agents-mcp"]["AGENTS_MCP_SERVER_SESSION_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "agents-mcp-session-key", "key": "key"}
    assert "AGENTS_MCP_SERVER_SESSION_KEY" not in env_of["agents-mattermost-agents-gateway"]
