"""The reindex Job launcher against a fake Kubernetes API server that validates every body against
the Kubernetes schema: the worker template is the one the Helm chart renders for the index pods."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from services.common.settings import SettingsError
from services.index.reindex.kubernetes_jobs import KubernetesJobs
from services.index.settings import load
from tests.fakes.kubernetes import FakeKubernetes
from tests.unit.deploy.test_helm_chart import by_name, render

JOB_ID = "0f3a9c1e2b7d4e5f60718293a4"


def chart_template(values: dict | None = None) -> dict:
    docs = render(values or {})
    config = by_name(docs, "ConfigMap")["agents-mattermost-agents-index-reindex-worker"]
    return json.loads(config["data"]["worker.json"])


@pytest_asyncio.fixture
async def kube() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as fake:
        yield fake


async def launcher(kube: FakeKubernetes, tmp_path: Path, template: dict) -> KubernetesJobs:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(kube.token + "\n")
    (account / "namespace").write_text("chat")
    (tmp_path / "worker.json").write_text(json.dumps(template))
    settings = load(
        {
            "AGENTS_INDEX_REINDEX_BACKEND": "kubernetes",
            "AGENTS_INDEX_REINDEX_JOB_TEMPLATE_FILE": str(tmp_path / "worker.json"),
            "AGENTS_INDEX_REINDEX_KUBERNETES_API_URL": kube.url,
            "AGENTS_INDEX_REINDEX_SERVICE_ACCOUNT_DIR": str(account),
        }
    )
    return await KubernetesJobs.create(settings)


async def test_a_run_creates_one_valid_indexed_job_of_n_hardened_workers_like_the_index_pods(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    jobs = await launcher(
        kube,
        tmp_path,
        chart_template({"components": {"index": {"envFrom": [{"secretRef": {"name": "embedding-keys"}}]}}}),
    )

    name = await jobs.launch(JOB_ID, 3)

    [create] = kube.requests
    assert (create.method, create.path) == ("POST", "/apis/batch/v1/namespaces/chat/jobs")
    job = kube.jobs[("chat", name)]  # stored: the schema accepted it
    assert name == f"agents-reindex-{JOB_ID}" and len(name) <= 63
    spec = job["spec"]
    assert (spec["parallelism"], spec["completions"], spec["completionMode"]) == (3, 3, "Indexed")
    assert (spec["backoffLimit"], spec["ttlSecondsAfterFinished"], spec["activeDeadlineSeconds"]) == (6, 86400, 86400)
    labels = {
        "app.kubernetes.io/name": "mattermost-agents",
        "app.kubernetes.io/instance": "agents",
        "app.kubernetes.io/component": "reindex-worker",
        "mattermost-agents/reindex-job": JOB_ID,
    }
    assert job["metadata"]["labels"] == labels and spec["template"]["metadata"]["labels"] == labels
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "agents-mattermost-agents"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["args"] == ["python", "-m", "services.index.reindex.worker", "--job-id", JOB_ID]
    assert container["image"] == "ghcr.io/example/mattermost-agents:0.1.0"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["limits"] == {"memory": "1Gi"}
    # The index pods' environment: secrets by reference, and the component's envFrom.
    env = {e["name"]: e for e in container["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "agents-database", "key": "url"}
    assert "secretKeyRef" in env["AGENTS_MATTERMOST_TOKEN"]["valueFrom"]
    assert container["envFrom"] == [{"secretRef": {"name": "embedding-keys"}}]

    running = await jobs.state(JOB_ID)
    assert (running.phase, running.reason) == ("running", "")


async def test_a_job_whose_status_says_failed_is_reported_failed_with_its_reason(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    jobs = await launcher(kube, tmp_path, chart_template())
    name = await jobs.launch(JOB_ID, 2)
    kube.fail("chat", name, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    state = await jobs.state(JOB_ID)

    assert (state.phase, state.failed) == ("failed", 7)
    assert state.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    kube.complete("chat", name)
    assert (await jobs.state(JOB_ID)).phase == "succeeded"


async def test_cancel_deletes_the_job_with_its_pods_and_a_second_cancel_is_harmless(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    jobs = await launcher(kube, tmp_path, chart_template())
    await jobs.launch(JOB_ID, 2)

    await jobs.delete(JOB_ID)
    await jobs.delete(JOB_ID)

    deletes = [r for r in kube.requests if r.method == "DELETE"]
    assert deletes[0].path == f"/apis/batch/v1/namespaces/chat/jobs/agents-reindex-{JOB_ID}"
    assert deletes[0].query["propagationPolicy"] == "Background"
    assert not kube.jobs
    with pytest.raises(NotFound):
        await jobs.state(JOB_ID)


async def test_a_run_launched_twice_is_refused_as_existing(kube: FakeKubernetes, tmp_path: Path) -> None:
    jobs = await launcher(kube, tmp_path, chart_template())
    await jobs.launch(JOB_ID, 2)

    with pytest.raises(AlreadyExists, match="already exists"):
        await jobs.launch(JOB_ID, 2)


async def test_a_body_the_api_server_finds_invalid_surfaces_its_422_naming_the_field(
    kube: FakeKubernetes, tmp_path: Path
) -> None:
    template = chart_template()
    template["env"].append({"value": "no name"})  # EnvVar.name is required
    jobs = await launcher(kube, tmp_path, template)

    with pytest.raises(FailedPrecondition) as refused:
        await jobs.launch(JOB_ID, 2)

    assert "(422)" in refused.value.message and "is invalid" in refused.value.message
    assert "'name' is a required property" in refused.value.message
    assert kube.requests and not kube.jobs


@pytest.mark.parametrize("workers", [0, -3])
async def test_a_worker_count_below_one_is_refused_before_any_call(
    kube: FakeKubernetes, tmp_path: Path, workers: int
) -> None:
    jobs = await launcher(kube, tmp_path, chart_template())

    with pytest.raises(InvalidInput, match=f"workers must be at least 1, not {workers}") as refused:
        await jobs.launch(JOB_ID, workers)

    assert refused.value.field == "workers" and not kube.requests


async def test_a_bad_template_is_refused_at_start_naming_its_field(kube: FakeKubernetes, tmp_path: Path) -> None:
    template = {**chart_template(), "backoffLimit": -1}

    with pytest.raises(InvalidInput, match="backoffLimit: Input should be greater than or equal to 0"):
        await launcher(kube, tmp_path, template)


def test_the_kubernetes_backend_needs_the_charts_template() -> None:
    with pytest.raises(SettingsError, match=r"AGENTS_INDEX_REINDEX_JOB_TEMPLATE_FILE: .*required when"):
        load({"AGENTS_INDEX_REINDEX_BACKEND": "kubernetes"})


async def test_outside_a_cluster_without_an_api_url_a_launch_fails_clearly(
    kube: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    jobs = await launcher(kube, tmp_path, chart_template())
    jobs = KubernetesJobs(
        jobs.template, jobs.namespace, load({"AGENTS_INDEX_REINDEX_SERVICE_ACCOUNT_DIR": str(tmp_path)})
    )

    with pytest.raises(FailedPrecondition, match="no access to the Kubernetes API from this pod"):
        await jobs.launch(JOB_ID, 2)

    assert not kube.requests
