"""A reindex with the Kubernetes Job backend, against the fake Kubernetes API server: the index
launches one Job per run and keeps the job live while its pods start; the test plays the pods by
running the real worker processes with the index's environment. A failed or vanished Job fails the
job (resumable), a cancel deletes it, and a job whose last worker died before completing it is
completed by the next status read."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from tests.fakes.kubernetes import FakeKubernetes
from tests.harness import SessionPostgres
from tests.integration.test_reindex import World, reindex_world
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

WORKERS = 3
NAMESPACE = "chat"
LEASE = 2.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kube() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(
    postgres: SessionPostgres, kube: FakeKubernetes, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    tmp = Path(tmp_path_factory.mktemp("kubernetes"))
    account = tmp / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(kube.token)
    (account / "namespace").write_text(NAMESPACE)
    template = {"namePrefix": "agents-reindex", "image": "agents:test", "serviceAccountName": "agents"}
    (tmp / "worker.json").write_text(json.dumps(template))
    env = {
        "AGENTS_INDEX_REINDEX_LEASE_SECONDS": str(LEASE),
        "AGENTS_INDEX_REINDEX_RETRY_SECONDS": "0",
        "AGENTS_INDEX_REINDEX_WORKERS": str(WORKERS),
        "AGENTS_INDEX_REINDEX_BACKEND": "kubernetes",
        "AGENTS_INDEX_REINDEX_JOB_TEMPLATE_FILE": str(tmp / "worker.json"),
        "AGENTS_INDEX_REINDEX_KUBERNETES_API_URL": kube.url,
        "AGENTS_INDEX_REINDEX_SERVICE_ACCOUNT_DIR": str(account),
    }
    async with reindex_world(postgres, tmp, ("kube-admin", "kube", "kube-scribe"), channels=9, posts=30, env=env) as w:
        yield w


async def pod(world: World, job_id: str) -> asyncio.subprocess.Process:
    """One of the Job's pods: the worker it runs, with the index's environment."""
    assert world.h.cluster is not None
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.index.reindex.worker",
        "--job-id",
        job_id,
        env=world.h.cluster.environment(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def sql(world: World, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        cursor = await conn.execute(query, args)
        return await cursor.fetchall() if cursor.description else []


async def job_lease(world: World, job_id: str) -> int:
    [(lease,)] = await sql(world, "SELECT lease_until FROM index_reindex_jobs WHERE id = %s", job_id)
    return int(lease)


async def test_a_reindex_runs_as_one_job_whose_pods_read_every_post_once(world: World, kube: FakeKubernetes) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
    assert status == 200, job
    name = f"agents-reindex-{job['job_id']}"
    spec = kube.jobs[(NAMESPACE, name)]["spec"]
    assert (spec["parallelism"], spec["completions"]) == (WORKERS, WORKERS)
    assert spec["template"]["spec"]["containers"][0]["args"][-1] == job["job_id"]

    # No pod has started yet: the index keeps the job live past its first lease, and neither
    # takes it for an orphan nor lets a second start resume it.
    first = await job_lease(world, job["job_id"])

    async def renewed() -> bool:
        return await job_lease(world, job["job_id"]) > first + LEASE * 1000

    await poll(renewed, within=30, message="the index did not renew the job's lease while its Job ran")
    status, refused = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 409, refused
    taken = "SELECT node_id FROM index_reindex_partitions WHERE job_id = %s AND node_id <> ''"
    assert await sql(world, taken, job["job_id"]) == []

    pods = [await pod(world, job["job_id"]) for _ in range(WORKERS)]
    codes = await asyncio.gather(*(p.wait() for p in pods))
    assert codes == [0] * WORKERS
    kube.complete(NAMESPACE, name)
    done = await world.ended(within=60)
    assert done["status"] == "completed" and done["job_id"] == job["job_id"], done
    await world.assert_exactly_once()
    nodes = {node for (node,) in await sql(world, taken, job["job_id"])}
    assert {int(node.rsplit("-", 1)[1]) for node in nodes} <= {p.pid for p in pods}, nodes


async def test_a_failed_job_fails_the_reindex_resumably_with_its_reason(world: World, kube: FakeKubernetes) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200, job
    name = f"agents-reindex-{job['job_id']}"
    kube.fail(NAMESPACE, name, "BackoffLimitExceeded", "Job has reached the specified backoff limit")

    failed = await world.ended(within=30)
    assert failed["status"] == "failed" and failed["job_id"] == job["job_id"], failed
    assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in failed["error"], failed

    # Resumable: the same job again, under a new Job in place of the failed one.
    status, resumed = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200 and resumed["job_id"] == job["job_id"], resumed
    assert kube.jobs[(NAMESPACE, name)]["status"] == {}
    await world.call("POST", "/admin/reindex/cancel")


async def test_a_vanished_job_with_partitions_left_fails_the_reindex_resumably(
    world: World, kube: FakeKubernetes
) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200, job
    del kube.jobs[(NAMESPACE, f"agents-reindex-{job['job_id']}")]  # collected after its TTL

    failed = await world.ended(within=30)
    assert failed["status"] == "failed" and failed["job_id"] == job["job_id"], failed
    assert failed["error"].startswith(f"{WORKERS} partitions unfinished") and "is gone" in failed["error"], failed


async def test_a_cancel_deletes_the_job(world: World, kube: FakeKubernetes) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
    assert status == 200, job
    name = f"agents-reindex-{job['job_id']}"
    assert (NAMESPACE, name) in kube.jobs

    status, canceled = await world.call("POST", "/admin/reindex/cancel")
    assert status == 200, canceled
    assert (NAMESPACE, name) not in kube.jobs
    assert any(r.method == "DELETE" and r.path.endswith(f"/jobs/{name}") for r in kube.requests)
    assert (await world.status())["status"] == "canceled"


async def test_a_worker_exits_non_zero_when_its_job_failed(world: World, kube: FakeKubernetes) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": True})
    assert status == 200, job
    world.embed.refuse_next(1000, status=503)  # an outage outlasting the retry time
    try:
        worker = await pod(world, job["job_id"])
        assert await worker.wait() == 1
    finally:
        world.embed.drop_script()
    failed = await world.status()
    assert failed["status"] == "failed", failed


async def test_a_job_whose_last_worker_died_before_completing_it_completes(world: World, kube: FakeKubernetes) -> None:
    status, job = await world.call("POST", "/admin/reindex", {"clearIndex": False})
    assert status == 200, job
    # The state a worker leaves when it dies between finishing the last partition and
    # completing the job; its pod failed, so the Job then ran out of retries.
    await sql(world, "UPDATE index_reindex_partitions SET done = true WHERE job_id = %s", job["job_id"])
    kube.fail(NAMESPACE, f"agents-reindex-{job['job_id']}", "BackoffLimitExceeded", "a pod failed")

    done = await world.ended(within=30)
    assert done["status"] == "completed" and done["job_id"] == job["job_id"], done
