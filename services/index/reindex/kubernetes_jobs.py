"""Reindex workers as one Kubernetes Job per run (``AGENTS_INDEX_REINDEX_BACKEND=kubernetes``).

The index service creates a ``batch/v1`` Indexed Job in its own namespace (the service account's
namespace file) whose N pods each run ``python -m services.index.reindex.worker --job-id <id>``:
every worker takes partition leases of that run until none remain, so a failed pod's partition is
taken over through its lease, by another pod or by the Job's retry (``backoffLimit``). The image,
environment, account and limits come from the template the Helm chart renders
(``AGENTS_INDEX_REINDEX_JOB_TEMPLATE_FILE``), so that workers run exactly like the index pods.
The pods are hardened like the Deployments: non-root, read-only root filesystem, no capabilities,
no API token (workers only need the database and Mattermost).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import aiohttp
from kubernetes_asyncio.client import ApiClient, BatchV1Api, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException
from kubernetes_asyncio.config.incluster_config import InClusterConfigLoader
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound, UpstreamUnavailable
from services.index.settings import IndexSettings

WORKER_MODULE = "services.index.reindex.worker"
COMPONENT = "reindex-worker"
JOB_ID_LABEL = "mattermost-agents/reindex-job"
# Job names are label values (job-name): 63 characters at most, the prefix's 30, a dash and the id's 32.
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_MAX_PREFIX = 30
_MAX_JOB_ID = 63 - _MAX_PREFIX - 1
# The Deployments' pod and container hardening (deploy/helm/.../deployments.yaml).
_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


class WorkerTemplate(BaseModel):
    """What the chart passes for the worker pods (JSON, the Kubernetes field names)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name_prefix: str = Field(pattern=_DNS_LABEL, max_length=_MAX_PREFIX)
    image: str = Field(min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[dict[str, str]] = []
    service_account_name: str = Field(min_length=1)
    labels: dict[str, str] = {}
    # Kubernetes EnvVar / EnvFromSource / ResourceRequirements objects, passed through as written.
    env: list[dict[str, Any]] = []
    env_from: list[dict[str, Any]] = []
    resources: dict[str, Any] = {}
    backoff_limit: int = Field(default=6, ge=0)
    ttl_seconds_after_finished: int = Field(default=86_400, ge=0)
    active_deadline_seconds: int = Field(default=86_400, ge=1)


@dataclass(frozen=True)
class WorkerJobState:
    """A run's Job as the API server last reported it."""

    name: str
    phase: Literal["running", "succeeded", "failed"]
    active: int
    succeeded: int
    failed: int
    # Why a failed Job failed (BackoffLimitExceeded, DeadlineExceeded, ...: the condition's words).
    reason: str = ""


def load_template(path: str) -> WorkerTemplate:
    """The chart's worker template; InvalidInput naming the file and what is wrong with it."""
    try:
        return WorkerTemplate.model_validate_json(Path(path).read_bytes())
    except OSError as err:
        raise InvalidInput(f"reindex job template {path}: {err.strerror}", field="reindex_job_template_file") from None
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise InvalidInput(f"reindex job template {path}: {problems}", field="reindex_job_template_file") from None


class KubernetesJobs:
    """Launches, reads and deletes the worker Job of a reindex run in this pod's namespace."""

    def __init__(self, template: WorkerTemplate, namespace: str, settings: IndexSettings) -> None:
        self.template = template
        self.namespace = namespace
        self._account = Path(settings.reindex_service_account_dir)
        self._api_url = settings.reindex_kubernetes_api_url

    @classmethod
    async def create(cls, settings: IndexSettings) -> KubernetesJobs:
        """Read the template and the pod's namespace (InvalidInput when either is missing or bad)."""
        template = await asyncio.to_thread(load_template, settings.reindex_job_template_file)
        namespace_file = Path(settings.reindex_service_account_dir) / "namespace"
        try:
            namespace = (await asyncio.to_thread(namespace_file.read_text)).strip()
        except OSError as err:
            raise InvalidInput(
                f"the pod's namespace ({namespace_file}): {err.strerror}", field="reindex_service_account_dir"
            ) from None
        return cls(template, namespace, settings)

    def job_name(self, job_id: str) -> str:
        """The Job's name for a run."""
        return f"{self.template.name_prefix}-{job_id}"

    def manifest(self, job_id: str, workers: int) -> dict[str, Any]:
        """The Job running ``workers`` workers of run ``job_id``; InvalidInput for a bad count or id."""
        if workers < 1:
            raise InvalidInput(f"workers must be at least 1, not {workers}", field="workers")
        if len(job_id) > _MAX_JOB_ID or not re.match(_DNS_LABEL, job_id):
            raise InvalidInput(
                f"job id must be lowercase letters, digits and dashes, {_MAX_JOB_ID} at most", field="job_id"
            )
        t = self.template
        labels = {**t.labels, "app.kubernetes.io/component": COMPONENT, JOB_ID_LABEL: job_id}
        container = {
            "name": COMPONENT,
            "image": t.image,
            "imagePullPolicy": t.image_pull_policy,
            "args": ["python", "-m", WORKER_MODULE, "--job-id", job_id],
            "env": t.env,
            "envFrom": t.env_from,
            "resources": t.resources,
            "securityContext": _CONTAINER_SECURITY,
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        pod = {
            "restartPolicy": "Never",
            "serviceAccountName": t.service_account_name,
            "automountServiceAccountToken": False,
            "imagePullSecrets": t.image_pull_secrets,
            "securityContext": _POD_SECURITY,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": self.job_name(job_id), "namespace": self.namespace, "labels": labels},
            "spec": {
                # Indexed: each of the N pods must succeed once; a worker that finds no partition
                # left (the others took them) exits 0 at once.
                "completionMode": "Indexed",
                "completions": workers,
                "parallelism": workers,
                "backoffLimit": t.backoff_limit,
                "ttlSecondsAfterFinished": t.ttl_seconds_after_finished,
                "activeDeadlineSeconds": t.active_deadline_seconds,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        }

    async def launch(self, job_id: str, workers: int) -> str:
        """Create the Job of run ``job_id`` with ``workers`` pods; its name. AlreadyExists when the
        run has one, FailedPrecondition when the API server refuses it (the reason included)."""
        body = self.manifest(job_id, workers)
        async with await self._api() as api:
            # The client sends a plain dict as it is: the manifest keeps the API's own field names.
            await self._call(BatchV1Api(api).create_namespaced_job(self.namespace, cast(Any, body)))
        return str(body["metadata"]["name"])

    async def state(self, job_id: str) -> WorkerJobState:
        """The run's Job as the API server reports it; NotFound when it has none (deleted, or
        collected ``ttlSecondsAfterFinished`` after it ended)."""
        name = self.job_name(job_id)
        async with await self._api() as api:
            job = await self._call(BatchV1Api(api).read_namespaced_job_status(name, self.namespace))
        status = job.status
        conditions = {c.type: c for c in status.conditions or [] if c.status == "True"}
        failed = conditions.get("Failed")
        phase: Literal["running", "succeeded", "failed"] = (
            "failed" if failed else "succeeded" if "Complete" in conditions else "running"
        )
        reason = f"{failed.reason}: {failed.message}" if failed else ""
        return WorkerJobState(name, phase, status.active or 0, status.succeeded or 0, status.failed or 0, reason)

    async def delete(self, job_id: str) -> None:
        """Delete the run's Job and its pods (a cancel); a Job already gone is fine."""
        async with await self._api() as api:
            try:
                await BatchV1Api(api).delete_namespaced_job(
                    self.job_name(job_id), self.namespace, propagation_policy="Background"
                )
            except ApiException as err:
                if err.status != 404:
                    raise _refusal(err) from None
            except aiohttp.ClientError as err:
                raise _unreachable(err) from None

    async def _api(self) -> ApiClient:
        # Built per call: the projected token is rotated (about hourly) and re-read each time.
        config = Configuration()
        token, ca = self._account / "token", self._account / "ca.crt"
        try:
            if self._api_url:
                config.host = self._api_url
                config.api_key["BearerToken"] = "Bearer " + (await asyncio.to_thread(token.read_text)).strip()
                if ca.exists():
                    config.ssl_ca_cert = str(ca)
            else:
                loader = InClusterConfigLoader(
                    token_filename=str(token), cert_filename=str(ca), try_refresh_token=False
                )
                await asyncio.to_thread(loader.load_and_set, config)
        except (OSError, ConfigException) as err:
            raise FailedPrecondition(f"no access to the Kubernetes API from this pod: {err}") from None
        return ApiClient(config)

    @staticmethod
    async def _call(request: Any) -> Any:
        try:
            return await request
        except ApiException as err:
            raise _refusal(err) from None
        except aiohttp.ClientError as err:
            raise _unreachable(err) from None


def _refusal(err: ApiException) -> Exception:
    """The API server's refusal as a domain error carrying its own message (a Status object)."""
    try:
        message = str(json.loads(err.body or b"{}").get("message") or err.reason)
    except (AttributeError, ValueError):
        message = str(err.reason)
    if err.status == 404:
        return NotFound(f"no such reindex Job: {message}")
    if err.status == 409:
        return AlreadyExists(f"the reindex Job exists already: {message}")
    if err.status in (429, 500, 502, 503, 504):
        return UpstreamUnavailable(f"the Kubernetes API is unavailable ({err.status}): {message}")
    if err.status == 403:
        message += " (the index service's account needs the chart's reindex Role: components.index.createsJobs)"
    return FailedPrecondition(f"the Kubernetes API refused the reindex Job ({err.status}): {message}")


def _unreachable(err: aiohttp.ClientError) -> UpstreamUnavailable:
    return UpstreamUnavailable(f"the Kubernetes API cannot be reached: {type(err).__name__}")
