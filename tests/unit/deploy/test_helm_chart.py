"""The Helm chart renders every ci/*-values.yaml with Helm's own engine into valid Kubernetes objects."""

from __future__ import annotations

from pathlib import Path

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[3] / "deploy" / "helm" / "mattermost-agents"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))


def render(values_file: Path | dict) -> list[dict]:
    values = values_file if isinstance(values_file, dict) else yaml.safe_load(values_file.read_text()) or {}
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


def test_a_forced_service_monitor_renders_valid_objects_too() -> None:
    # The CRD is not in the Kubernetes schemas: everything else is validated, the monitor checked by shape.
    docs = render({"metrics": {"serviceMonitor": True}})
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    components = ("gateway", "index", "llm", "mcp", "tools")
    assert sorted(m["metadata"]["name"] for m in monitors) == [f"agents-mattermost-agents-{c}" for c in components]
    llm = by_name(docs, "ServiceMonitor")["agents-mattermost-agents-llm"]
    assert llm["spec"]["endpoints"][0]["port"] == "metrics"
    service = by_name(docs, "Service")["agents-mattermost-agents-llm"]
    assert llm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    for doc in docs:
        if doc["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(doc, "1.33", strict=True)


def by_name(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_without_the_operator_pods_carry_scrape_annotations_instead() -> None:
    docs = render({})
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]
    pod = by_name(docs, "Deployment")["agents-mattermost-agents-llm"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"


def test_autoscaled_components_get_an_hpa_and_leave_replicas_to_it() -> None:
    docs = render(CHART / "ci" / "production-values.yaml")
    hpas = by_name(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == {"agents-mattermost-agents-gateway", "agents-mattermost-agents-llm"}
    assert hpas["agents-mattermost-agents-llm"]["spec"]["maxReplicas"] == 20
    deployments = by_name(docs, "Deployment")
    assert "replicas" not in deployments["agents-mattermost-agents-llm"]["spec"]
    assert deployments["agents-mattermost-agents-tools"]["spec"]["replicas"] == 2


def test_disruption_budgets_and_spread_keep_replicas_apart() -> None:
    docs = render({})
    pdbs = by_name(docs, "PodDisruptionBudget")
    assert "agents-mattermost-agents-llm" in pdbs and "agents-mattermost-agents-mcp" not in pdbs
    spec = by_name(docs, "Deployment")["agents-mattermost-agents-llm"]["spec"]["template"]["spec"]
    keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_termination_outlasts_prestop_drain_and_grace() -> None:
    docs = render(CHART / "ci" / "production-values.yaml")
    spec = by_name(docs, "Deployment")["agents-mattermost-agents-gateway"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # preStop 5 + drain 10 + grace 60, with room to spare.
    assert spec["terminationGracePeriodSeconds"] > 5 + 10 + 60
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_network_policies_deny_by_default_and_open_the_database_only_to_table_owners() -> None:
    docs = render({})
    policies = by_name(docs, "NetworkPolicy")
    deny = policies["agents-mattermost-agents-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny

    def reaches_database(component: str) -> bool:
        rules = policies[f"agents-mattermost-agents-{component}"]["spec"]["egress"]
        return any(port.get("port") == 5432 for rule in rules for port in rule.get("ports", []))

    assert {c: reaches_database(c) for c in ("gateway", "llm", "tools", "mcp", "index")} == {
        "gateway": False,
        "llm": True,
        "tools": True,
        "mcp": True,
        "index": True,
    }
    # Internal services accept only the release's own pods; the gateway accepts Mattermost.
    llm_from = policies["agents-mattermost-agents-llm"]["spec"]["ingress"][0]["from"]
    assert llm_from == [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "agents"}}}]
    gateway_from = policies["agents-mattermost-agents-gateway"]["spec"]["ingress"][0]["from"]
    assert gateway_from[0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "mattermost"}


def test_only_the_index_service_holds_the_right_to_create_jobs() -> None:
    docs = render({})
    deployments = by_name(docs, "Deployment")
    index = deployments["agents-mattermost-agents-index"]["spec"]["template"]["spec"]
    llm = deployments["agents-mattermost-agents-llm"]["spec"]["template"]["spec"]
    assert index["serviceAccountName"] == "agents-mattermost-agents-reindex" and index["automountServiceAccountToken"]
    assert llm["serviceAccountName"] == "agents-mattermost-agents" and not llm["automountServiceAccountToken"]
    binding = by_name(docs, "RoleBinding")["agents-mattermost-agents-reindex-jobs"]
    assert binding["subjects"][0]["name"] == "agents-mattermost-agents-reindex"
    rules = by_name(docs, "Role")["agents-mattermost-agents-reindex-jobs"]["rules"]
    assert {r for rule in rules for r in rule["resources"]} == {"jobs", "pods"}


def test_the_index_pods_launch_reindex_jobs_from_the_worker_template_the_chart_mounts() -> None:
    docs = render({})
    index = by_name(docs, "Deployment")["agents-mattermost-agents-index"]["spec"]["template"]["spec"]
    [container] = index["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AGENTS_INDEX_REINDEX_BACKEND"] == "kubernetes"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["AGENTS_INDEX_REINDEX_JOB_TEMPLATE_FILE"] == mounts["reindex-worker"] + "/worker.json"
    volumes = {v["name"]: v for v in index["volumes"]}
    assert volumes["reindex-worker"]["configMap"]["name"] == "agents-mattermost-agents-index-reindex-worker"
    llm = by_name(docs, "Deployment")["agents-mattermost-agents-llm"]["spec"]["template"]["spec"]
    assert "AGENTS_INDEX_REINDEX_BACKEND" not in {e["name"] for e in llm["containers"][0]["env"]}
    # Workers reach the database and Mattermost, and nothing reaches them.
    policy = by_name(docs, "NetworkPolicy")["agents-mattermost-agents-reindex-worker"]["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "reindex-worker"
    assert "ingress" not in policy
    assert {p["port"] for rule in policy["egress"] for p in rule["ports"]} >= {5432, 8065}


def test_migrations_run_as_a_hook_job_before_the_release_with_chart_made_secrets_first() -> None:
    docs = render({"database": {"existingSecret": "", "url": "postgresql://agents:pw@db:5432/agents"}})
    job = by_name(docs, "Job")["agents-mattermost-agents-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["python", "-m", "services.cluster", "migrate"]
    env = {e["name"]: e for e in container["env"]}
    secret_name = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    secret = by_name(docs, "Secret")[secret_name]
    assert secret["stringData"] == {"url": "postgresql://agents:pw@db:5432/agents"}
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )


def test_token_usage_records_go_to_stdout_or_to_a_volume_never_to_the_read_only_root() -> None:
    def llm_container(values: dict) -> dict:
        spec = by_name(render(values), "Deployment")["agents-mattermost-agents-llm"]["spec"]["template"]["spec"]
        return {"container": spec["containers"][0], "volumes": {v["name"]: v for v in spec["volumes"]}}

    default = llm_container({})
    env = {e["name"]: e.get("value") for e in default["container"]["env"]}
    assert env["AGENTS_LLM_TOKEN_USAGE_LOG_PATH"] == "-"
    on_volume = llm_container({"tokenUsageLog": {"destination": "volume", "existingClaim": "usage"}})
    env = {e["name"]: e.get("value") for e in on_volume["container"]["env"]}
    mounts = {m["name"]: m["mountPath"] for m in on_volume["container"]["volumeMounts"]}
    assert env["AGENTS_LLM_TOKEN_USAGE_LOG_PATH"].startswith(mounts["token-usage"] + "/")
    assert on_volume["volumes"]["token-usage"]["persistentVolumeClaim"]["claimName"] == "usage"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"components": {"llm": {"replicas": -1}}}, "/components/llm/replicas"),
        ({"tokenUsageLog": {"destination": "file"}}, "/tokenUsageLog/destination"),
        ({"database": {"existingSecret": "", "url": ""}}, "/database"),
        ({"mattermost": {"url": "chat.example.com"}}, "/mattermost/url"),
        ({"mattermost": {"siteURL": "chat.example.com"}}, "/mattermost/siteURL"),
        ({"components": {"llm": {"replica": 3}}}, "replica"),
        ({"logLevl": "DEBUG"}, "logLevl"),
        ({"reindexJobs": {"backoffLimit": -1}}, "/reindexJobs/backoffLimit"),
        ({"components": {"llm": {"workers": 0}}}, "/components/llm/workers"),
        ({"components": {"index": {"workers": 2}}}, "/components/index/workers"),
    ],
)
def test_a_bad_value_fails_at_install_naming_it(values: dict, complaint: str) -> None:
    with pytest.raises(helm_python.HelmError, match=complaint):
        render(values)


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


def container_env(docs: list[dict], component: str) -> dict[str, str]:
    spec = by_name(docs, "Deployment")[f"agents-mattermost-agents-{component}"]["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", "") for e in spec["containers"][0]["env"]}


def test_one_site_url_value_sets_the_one_site_url_setting_of_the_mcp_pods() -> None:
    # OAuth redirects and the Mattermost MCP server's resource URL both follow it.
    docs = render({"mattermost": {"siteURL": "https://chat.example.com"}})
    env = container_env(docs, "mcp")
    assert env["AGENTS_MCP_SITE_URL"] == "https://chat.example.com"
    assert [name for name in env if name.endswith("SITE_URL")] == ["AGENTS_MCP_SITE_URL"]
    assert "AGENTS_MCP_SITE_URL" not in container_env(render(CHART / "ci" / "default-values.yaml"), "mcp")


def test_workers_per_pod_reach_the_processes_and_the_llm_workers_own_ports_are_open() -> None:
    docs = render(
        {"networkPolicy": {"enabled": True}, "components": {"llm": {"workers": 3}, "gateway": {"workers": 2}}}
    )
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33", strict=True)
    assert container_env(docs, "llm")["AGENTS_LLM_WORKERS"] == "3"
    assert container_env(docs, "llm")["AGENTS_LLM_WORKER_PORTS_FROM"] == "50052"
    assert container_env(docs, "gateway")["AGENTS_GATEWAY_WORKERS"] == "2"
    assert "AGENTS_TOOLS_WORKERS" not in container_env(docs, "tools")
    ingress = by_name(docs, "NetworkPolicy")["agents-mattermost-agents-llm"]["spec"]["ingress"][0]["ports"]
    assert ingress == [{"port": 50051}, {"port": 50052, "endPort": 50054}]
    # One worker (the default) is a lone process, as before.
    assert "AGENTS_LLM_WORKERS" not in container_env(render({}), "llm")
