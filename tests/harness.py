"""Test harness: one embedded PostgreSQL per test session, and the whole cluster as real
processes against a fresh database and a fake Mattermost. Every integration suite reuses it.

    async with ClusterHarness(postgres) as h:
        alice = h.mattermost.add_user("alice")
        status, body = await h.get("/ai_bots", user=alice)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from psycopg import sql

from services.cluster.postgres import EmbeddedPostgres
from services.cluster.supervisor import GRPC_SERVICES, Cluster, ClusterConfig, free_port
from services.common.identity import SERVICE_TOKEN_KEY, USER_ID_KEY, Identity
from services.index.registry.store import AGENTS_CHANNEL
from tests.fakes.mattermost import FakeMattermost
from tests.fakes.mattermost.state import FakeUser
from tests.polling import poll

PLUGIN = "/plugins/mattermost-ai"


class SessionPostgres:
    """The session's PostgreSQL; each harness gets its own database in it."""

    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedPostgres(data_dir)
        self.admin_url = ""

    async def start(self) -> None:
        self.admin_url = await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()

    async def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def url_for(self, database: str) -> str:
        base, _, query = self.admin_url.partition("?")
        return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


class ClusterHarness:
    """Fake Mattermost + fresh database + the five services (``replicas`` processes of each, with
    ``process_env`` extras per process name, all healthy within ``start_within`` seconds per
    replica), torn down in reverse order."""

    def __init__(
        self,
        postgres: SessionPostgres,
        *,
        env: dict[str, str] | None = None,
        log_sink: Callable[[str, str], None] | None = None,
        replicas: int = 1,
        process_env: dict[str, dict[str, str]] | None = None,
        # Five interpreters importing at once on a shared 2-core machine at load 30 took over 60 s.
        start_within: float = 180.0,
    ) -> None:
        self.postgres = postgres
        self.start_within = start_within
        self.extra_env = env or {}
        self.replicas = replicas
        self.process_env = process_env or {}
        self.mattermost = FakeMattermost()
        self.tmp = Path(tempfile.mkdtemp(prefix="agents-test-"))
        self.trace_file = self.tmp / "spans.jsonl"
        self.logs: dict[str, list[str]] = {}
        self._log_sink = log_sink
        self.cluster: Cluster | None = None
        self.database_url = ""
        self.http: aiohttp.ClientSession | None = None
        self.cluster_account: FakeUser | None = None

    async def __aenter__(self) -> ClusterHarness:
        await self.mattermost.__aenter__()
        # The cluster's own Mattermost account (a system admin bot, as an operator would set up).
        self.cluster_account = self.mattermost.add_user("agents-cluster", roles="system_user system_admin", is_bot=True)
        self.database_url = await self.postgres.create_database()
        env = {
            "AGENTS_MATTERMOST_URL": self.mattermost.url,
            "AGENTS_MATTERMOST_TOKEN": self.cluster_account.token,
            "AGENTS_GATEWAY_AUTH_MODE": "session",
            "AGENTS_TELEMETRY_OUTPUT": "file",
            "AGENTS_TRACE_FILE": str(self.trace_file),
            "AGENTS_SHUTDOWN_GRACE_SECONDS": "5",
            **self.extra_env,
        }
        # Every service serves its metrics, as `make up` does: a listener thread each is cheap.
        metrics_ports = {name: free_port() for name in (*GRPC_SERVICES, "gateway")}
        config = ClusterConfig(
            database_url=self.database_url,
            env=env,
            log_sink=self._sink,
            replicas=self.replicas,
            process_env=self.process_env,
            metrics_ports=metrics_ports,
        )
        self.cluster = Cluster(config)
        self.http = aiohttp.ClientSession()
        try:
            await self.cluster.start(timeout=self.start_within * self.replicas)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.cluster is not None:
            await self.cluster.stop(grace=10)
        if self.http is not None:
            await self.http.close()
        await self.mattermost.__aexit__(None, None, None)

    def _sink(self, service: str, line: str) -> None:
        self.logs.setdefault(service, []).append(line)
        if os.environ.get("AGENTS_TEST_ECHO_LOGS"):  # debugging aid: pytest -s shows every service log
            print(f"{service:>9} | {line}", file=sys.stderr)
        if self._log_sink:
            self._log_sink(service, line)

    @property
    def gateway_url(self) -> str:
        assert self.cluster is not None
        return self.cluster.gateway_url

    async def start_gateway(
        self, name: str, *, env: dict[str, str] | None = None, within: float = 30.0, port: int = 0
    ) -> str:
        """Start another gateway replica as process ``name`` on its own port (``port``, else a free
        one); returns its URL once ready. It shares everything else (services, database,
        Mattermost) with the first one and is stopped with the cluster (or with
        ``cluster.stop_service(name, sig=SIGKILL)``)."""
        assert self.cluster is not None and self.http is not None
        port = port or free_port(self.cluster.config.host)
        environment = {
            **self.cluster.environment(),
            "AGENTS_GATEWAY_HTTP_PORT": str(port),
            "AGENTS_GATEWAY_METRICS_PORT": str(free_port(self.cluster.config.host)),
            **(env or {}),
        }
        await self.cluster.start_service(name, environment, module="gateway")
        url = f"http://{self.cluster.config.host}:{port}"
        cluster, http = self.cluster, self.http

        async def ready() -> bool:
            proc = cluster.processes[name].proc
            if proc.returncode is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up")
            try:
                async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    return resp.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await poll(ready, within=within, interval=0.1, message=f"{name} not ready after {within:.0f}s")
        return url

    async def request(
        self,
        method: str,
        path: str,
        *,
        user: FakeUser | None = None,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        base_url: str = "",
    ) -> tuple[int, Any, dict[str, str]]:
        """Call a plugin route as ``user`` (session auth with the user's token); ``base_url``
        picks another gateway replica than the first."""
        assert self.http is not None
        hdrs = dict(headers or {})
        if user is not None:
            hdrs["Authorization"] = f"Bearer {user.token}"
        if json_body is not None:
            data = json.dumps(json_body)
        url = f"{base_url or self.gateway_url}{PLUGIN}{path}"
        async with self.http.request(method, url, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = raw.decode(errors="replace")
            return resp.status, body, dict(resp.headers)

    async def get(self, path: str, *, user: FakeUser | None = None) -> tuple[int, Any]:
        status, body, _ = await self.request("GET", path, user=user)
        return status, body

    def channel(self, service: str) -> grpc.aio.Channel:
        assert self.cluster is not None
        return grpc.aio.insecure_channel(self.cluster.address(service))

    def metadata(self, identity: Identity | None = None) -> list[tuple[str, str]]:
        """Metadata an internal service would send: the service credential plus an identity."""
        assert self.cluster is not None
        md = [(SERVICE_TOKEN_KEY, self.cluster.config.service_token)]
        if identity is not None:
            md += [(k, v) for k, v in identity.to_metadata() if k != USER_ID_KEY or v]
        return md

    def spans(self) -> list[dict[str, Any]]:
        if not self.trace_file.exists():
            return []
        return [json.loads(line) for line in self.trace_file.read_text().splitlines() if line.strip()]

    async def wait_for_spans(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, within: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll the span file until ``predicate`` holds (spans are written when they end)."""

        def matching() -> tuple[list[dict[str, Any]]] | None:
            spans = self.spans()
            return (spans,) if predicate(spans) else None  # in a tuple: no spans can be a match

        def have() -> str:
            return f"spans never matched; have {[(s['service'], s['name']) for s in self.spans()]}"

        (spans,) = await poll(matching, within=within, interval=0.05, message=have)
        return spans


async def health_status(channel: grpc.aio.Channel) -> int | None:
    """The server's overall ``grpc.health.v1`` status, or None while it does not answer."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
    except grpc.aio.AioRpcError:
        return None
    return reply.status


async def wait_serving(port: int, within: float = 60) -> None:
    """Until the gRPC server on the loopback ``port`` reports SERVING."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:

        async def serving() -> bool:
            return await health_status(channel) == health_pb2.HealthCheckResponse.SERVING

        await poll(serving, within=within, interval=0.05, message=f"the server on {port} never became SERVING")


async def insert_agent(database_url: str, username: str, bot_user_id: str, **columns: object) -> str:
    """Seed an agent row directly (suites that test other things than the agent routes), and
    notify the registry's replicas as its own writes do. Returns the agent id."""
    now = int(time.time() * 1000)
    row = {
        "id": secrets.token_hex(13),
        "botuserid": bot_user_id,
        "username": username,
        "displayname": username.title(),
        "serviceid": "svc",
        "createat": now,
        "updateat": now,
        **columns,
    }
    cols = ", ".join(row)
    marks = ", ".join(f"%({k})s" for k in row)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"INSERT INTO agents_useragents ({cols}) VALUES ({marks})", row)
        await conn.execute("SELECT pg_notify(%s, '')", (AGENTS_CHANNEL,))
    return str(row["id"])
