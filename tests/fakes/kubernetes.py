"""Fake Kubernetes API server for ``batch/v1`` Jobs, on one loopback HTTP server.

Like the real one it wants the bearer token, validates every body it is sent against the
Kubernetes OpenAPI schema of the version the chart targets (kubernetes-validate, strict: unknown
fields too) and refuses an invalid one with 422 and a ``Status`` naming the field; it answers a
create with 201 and the stored object, reads with the object and its status, a second create of a
name with 409, an unknown name with 404. Tests set a Job's status (``fail``, ``complete``) and read
every request it was sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import kubernetes_validate
from aiohttp import web

# The Kubernetes version the chart is rendered and validated for (tests/unit/deploy/test_helm_chart.py).
KUBERNETES_VERSION = "1.33"
JOBS = "/apis/batch/v1/namespaces/{namespace}/jobs"


@dataclass
class KubeRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass
class FakeKubernetes:
    """The server. ``jobs[(namespace, name)]`` is every Job it holds."""

    token: str = "kube-test-token"
    host: str = "127.0.0.1"
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[KubeRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail(self, namespace: str, name: str, reason: str, message: str) -> None:
        """The Job controller's view of a Job that ran out of retries or time."""
        job = self.jobs[(namespace, name)]
        job["status"] = {
            "failed": job["spec"].get("backoffLimit", 6) + 1,
            "conditions": [_condition("FailureTarget", reason, message), _condition("Failed", reason, message)],
        }

    def complete(self, namespace: str, name: str) -> None:
        job = self.jobs[(namespace, name)]
        job["status"] = {
            "succeeded": job["spec"]["completions"],
            "conditions": [_condition("SuccessCriteriaMet", "CompletionsReached", ""), _condition("Complete", "", "")],
        }

    async def __aenter__(self) -> FakeKubernetes:
        app = web.Application(middlewares=[self._authenticated])
        app.router.add_post(JOBS, self._create)
        app.router.add_get(JOBS + "/{name}", self._read)
        app.router.add_get(JOBS + "/{name}/status", self._read)
        app.router.add_delete(JOBS + "/{name}", self._delete)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _authenticated(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.text()
        self.requests.append(
            KubeRequest(request.method, request.path, dict(request.query), json.loads(raw) if raw else None)
        )
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def _create(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        body = await request.json()
        name = body.get("metadata", {}).get("name", "")
        if body.get("metadata", {}).get("namespace", namespace) != namespace:
            return _status(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        try:
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            return _status(
                422,
                "Invalid",
                f'Job.batch "{name}" is invalid: {path}: {err.message}',
                details={"name": name, "group": "batch", "kind": "jobs", "causes": [{"field": path}]},
            )
        if (namespace, name) in self.jobs:
            return _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        job = {**body, "metadata": {**body["metadata"], "namespace": namespace, "uid": f"uid-{name}"}, "status": {}}
        self.jobs[(namespace, name)] = job
        return web.json_response(job, status=201)

    async def _read(self, request: web.Request) -> web.Response:
        job = self.jobs.get((request.match_info["namespace"], request.match_info["name"]))
        if job is None:
            return _status(404, "NotFound", f'jobs.batch "{request.match_info["name"]}" not found')
        return web.json_response(job)

    async def _delete(self, request: web.Request) -> web.Response:
        job = self.jobs.pop((request.match_info["namespace"], request.match_info["name"]), None)
        if job is None:
            return _status(404, "NotFound", f'jobs.batch "{request.match_info["name"]}" not found')
        return web.json_response(job)


def _condition(kind: str, reason: str, message: str) -> dict[str, str]:
    now = "2026-01-01T00:00:00Z"
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _status(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return web.json_response(body, status=code)
