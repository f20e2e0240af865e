"""Starts the services as separate processes, prefixes their logs, waits until every one is
healthy, and stops them cleanly. Used by ``make up`` and by the integration tests.

With a ``RestartPolicy`` (``make up``'s) a service that exits on its own is started again after a
growing delay, and one that keeps crashing stops the cluster (``CrashLoop``). Without one (the
test harness, whose tests stop and kill services on purpose) a dead service stays dead."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.workers import RestartPolicy

GRPC_SERVICES = ("index", "llm", "tools", "mcp")
# How many of a process's last log lines an error about it quotes.
RECENT_LINES = 20
COLOURS = {"index": 36, "llm": 35, "tools": 33, "mcp": 34, "gateway": 32}


class CrashLoop(RuntimeError):
    """A service crashed more often than the restart policy allows: the cluster gives up."""


def describe_exit(code: int) -> str:
    """A process's exit status in words (a negative code is the signal that killed it)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def port_variable(service: str) -> str:
    """The variable that sets the port a process of ``service`` listens on."""
    return "AGENTS_GATEWAY_HTTP_PORT" if service == "gateway" else f"AGENTS_{service.upper()}_GRPC_PORT"


# Ports ``free_port`` has handed out in this process: none is handed out twice, since a port
# picked but not yet bound is free to the OS too (two listeners of one cluster once got the same).
_handed_out: set[int] = set()
# Where a picked port may lie: below the kernel's ephemeral range, whose ports any outgoing
# connection may hold when a restarted process binds its port again.
_LOWEST_PORT = 10000


@functools.cache
def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, outside the ephemeral range where it can, and one this process
    has not handed out before (another process may still take it before it is bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ceiling = _ephemeral_start()
    for _ in range(1000):
        wanted = secrets.randbelow(ceiling - _LOWEST_PORT) + _LOWEST_PORT if ceiling > _LOWEST_PORT + 1000 else 0
        with socket.socket(family) as sock:
            try:
                sock.bind((host, wanted))
            except OSError:
                continue
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError(f"no free port on {host} that was not handed out already")


@dataclass
class ClusterConfig:
    """Where the processes listen, what they are started with, and what happens to their logs."""

    database_url: str
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)  # service → port; missing → defaults/free
    # process → its Prometheus listener's port; a service missing here has none (0), its other
    # replicas get free ports when the service has one
    metrics_ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # extra environment for every process
    service_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Seals the Mattermost MCP server's session ids: one key for every mcp process, restarts included.
    mcp_session_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    log_sink: Callable[[str, str], None] | None = None  # (service, line); None prints prefixed
    colour: bool = False
    restart: RestartPolicy | None = None  # None: a service that dies stays down
    # Processes per service: replica k > 1 of ``llm`` is the process ``llm-k`` on a port of its own.
    replicas: int = 1
    process_env: dict[str, dict[str, str]] = field(default_factory=dict)  # process → extra environment

    def port(self, name: str) -> int:
        """The port of process ``name`` (a gateway's HTTP port, else its gRPC port)."""
        return self.ports[name]

    def processes_of(self, service: str) -> list[str]:
        """The process names of ``service``'s replicas, the first one named after the service."""
        return [service, *(f"{service}-{k}" for k in range(2, self.replicas + 1))]


@dataclass
class ServiceProcess:
    """One running service: its process, the task that copies its output, how to start it again."""

    name: str
    proc: asyncio.subprocess.Process
    pump: asyncio.Task[None]
    env: dict[str, str]  # what a restart starts it with again
    module: str


class Cluster:
    """The five processes on loopback. ``await start()`` returns once all report healthy."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.processes: dict[str, ServiceProcess] = {}
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._crash_loop: CrashLoop | None = None
        self._crash_looped = asyncio.Event()
        # Each process's last lines, quoted when it dies during start-up (its own reason).
        self._recent: dict[str, deque[str]] = {}
        for service in (*GRPC_SERVICES, "gateway"):
            for name in config.processes_of(service):
                config.ports.setdefault(name, free_port(config.host))
                # A replica's metrics need a listener of its own: the first one's port is taken.
                if config.metrics_ports.get(service):
                    config.metrics_ports.setdefault(name, free_port(config.host))

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL."""
        return f"http://{self.config.host}:{self.config.port('gateway')}"

    def metrics_url(self, name: str) -> str:
        """Where process ``name`` serves its metrics (the plugin's path; any path answers)."""
        return f"http://{self.config.host}:{self.config.metrics_ports[name]}/plugins/mattermost-ai/metrics"

    def address(self, name: str) -> str:
        """``host:port`` of process ``name``."""
        return f"{self.config.host}:{self.config.port(name)}"

    def target(self, service: str) -> str:
        """What clients dial for ``service``: its address, or every replica's for gRPC's
        round-robin (each call to the next connected replica; a stream stays on its own)."""
        names = self.config.processes_of(service)
        if len(names) == 1:
            return self.address(service)
        return "ipv4:" + ",".join(self.address(name) for name in names)

    def environment(self) -> dict[str, str]:
        """This process's environment plus the settings that wire the services to each other."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.config.database_url,
                "AGENTS_SERVICE_TOKEN": self.config.service_token,
                "AGENTS_GRPC_HOST": self.config.host,
                "AGENTS_INDEX_ADDR": self.target("index"),
                "AGENTS_LLM_ADDR": self.target("llm"),
                "AGENTS_TOOLS_ADDR": self.target("tools"),
                "AGENTS_MCP_ADDR": self.target("mcp"),
                "AGENTS_GATEWAY_HTTP_HOST": self.config.host,
                "AGENTS_GATEWAY_HTTP_PORT": str(self.config.port("gateway")),
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name in GRPC_SERVICES:
            env[f"AGENTS_{name.upper()}_GRPC_PORT"] = str(self.config.port(name))
        env.setdefault("AGENTS_MCP_SERVER_SESSION_KEY", self.config.mcp_session_key)
        for name in (*GRPC_SERVICES, "gateway"):
            env[f"AGENTS_{name.upper()}_METRICS_HOST"] = self.config.host
            env[f"AGENTS_{name.upper()}_METRICS_PORT"] = str(self.config.metrics_ports.get(name, 0))
        env.update(self.config.env)
        return env

    def replica_environment(self, service: str, name: str) -> dict[str, str]:
        """What process ``name``, a replica of ``service``, is started with: the shared
        environment, its own port and its own extras."""
        own = {port_variable(service): str(self.config.port(name))}
        if name != service:  # the first replica's is the shared environment's (which ``env`` may set)
            own[f"AGENTS_{service.upper()}_METRICS_PORT"] = str(self.config.metrics_ports.get(name, 0))
        return {**self.environment(), **own, **self.config.process_env.get(name, {})}

    async def start(self, *, timeout: float = 60.0) -> None:
        """Start every replica of every service and wait until all are SERVING (TimeoutError
        after ``timeout``)."""
        for service in (*GRPC_SERVICES, "gateway"):
            for name in self.config.processes_of(service):
                await self.start_service(name, self.replica_environment(service, name), module=service)
        await self.wait_healthy(timeout=timeout)

    async def start_service(self, name: str, env: dict[str, str] | None = None, *, module: str = "") -> None:
        """Start ``services.<name>`` (or ``services.<module>`` under another name: a second replica)."""
        await self._spawn(name, env or self.environment(), module or name)
        if self.config.restart is not None:
            self._keepers[name] = asyncio.create_task(self._keep_running(name, self.config.restart))

    async def _spawn(self, name: str, env: dict[str, str], module: str) -> ServiceProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{module}",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        service = ServiceProcess(name, proc, asyncio.create_task(self._pump(name, proc)), env, module)
        self.processes[name] = service
        self.log("cluster", f"{name} started (pid {proc.pid})")
        return service

    async def _keep_running(self, name: str, policy: RestartPolicy) -> None:
        """Start ``name`` again each time it exits on its own, until it crash-loops."""
        crashes: list[float] = []
        while True:
            service = self.processes[name]
            code = await service.proc.wait()
            if self._stopping or self.processes.get(name) is not service:
                return  # stopped on purpose
            now = time.monotonic()
            crashes = [t for t in crashes if now - t < policy.window] + [now]
            if len(crashes) > policy.max_restarts:
                self._crash_loop = CrashLoop(
                    f"{name} crashed {len(crashes)} times within {policy.window:.0f}s ({describe_exit(code)}"
                    " the last time), see its log above"
                )
                self._crash_looped.set()
                return
            delay = policy.delay(len(crashes))
            self.log(
                "cluster",
                f"{name} exited unexpectedly ({describe_exit(code)}); restarting it in {delay:.1f}s"
                f" (crash {len(crashes)} of at most {policy.max_restarts} within {policy.window:.0f}s)",
            )
            await asyncio.sleep(delay)
            if self.processes.get(name) is not service:
                return  # stopped on purpose meanwhile
            service = await self._spawn(name, service.env, service.module)
            if await self._serving_unless_exited(service):
                self.log("cluster", f"{name} restarted: SERVING again")

    async def _serving_unless_exited(self, service: ServiceProcess) -> bool:
        """Poll until the service is SERVING (True) or its process exits (False)."""
        async with aiohttp.ClientSession() as http:
            while service.proc.returncode is None:
                if await self._healthy(service.name, http):
                    return True
                await asyncio.sleep(0.1)
        return False

    async def crash_loop(self) -> CrashLoop:
        """Wait until a service crash-loops (under a restart policy; never otherwise)."""
        await self._crash_looped.wait()
        assert self._crash_loop is not None
        return self._crash_loop

    def log(self, name: str, text: str) -> None:
        """One line of ``name``'s log (a service's, or the supervisor's own as ``cluster``)."""
        self._recent.setdefault(name, deque(maxlen=RECENT_LINES)).append(text)
        if self.config.log_sink:
            self.config.log_sink(name, text)
        elif self.config.colour:
            print(f"\x1b[{COLOURS.get(name, 37)}m{name:>7} |\x1b[0m {text}", flush=True)
        else:
            print(f"{name:>7} | {text}", flush=True)

    async def _pump(self, name: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            self.log(name, line.decode(errors="replace").rstrip())

    async def wait_healthy(self, *, timeout: float = 60.0, names: tuple[str, ...] | None = None) -> None:
        """Poll gRPC health (and the gateway's /readyz) until every service is SERVING."""
        deadline = time.monotonic() + timeout
        pending = set(names or self.processes)
        async with aiohttp.ClientSession() as http:
            while pending:
                if self._crash_loop is not None:
                    raise self._crash_loop
                for name in sorted(pending):
                    proc = self.processes[name].proc
                    if proc.returncode is not None:
                        if self.config.restart is not None:
                            continue  # its keeper starts it again
                        last = "\n".join(self._recent.get(name, ()))
                        raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up:\n{last}")
                    if await self._healthy(name, http):
                        pending.discard(name)
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not healthy after {timeout:.0f}s: {', '.join(sorted(pending))}")
                await asyncio.sleep(0.1)

    async def _healthy(self, name: str, http: aiohttp.ClientSession) -> bool:
        service = self.processes[name]
        address = f"{self.config.host}:{service.env[port_variable(service.module)]}"
        if service.module == "gateway":
            try:
                async with http.get(f"http://{address}/readyz", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    return r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False
        async with grpc.aio.insecure_channel(address) as channel:
            try:
                # types-grpcio-health-checking's HealthStub declares no RPC attributes.
                check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
                reply: health_pb2.HealthCheckResponse = await check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.aio.AioRpcError:
                return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def stop_service(self, name: str, *, grace: float = 30.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal one process and wait for it (SIGKILL after ``grace``). Returns its exit code."""
        service = self.processes.pop(name, None)
        if service is None:
            return None
        if service.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(sig)
            try:
                await asyncio.wait_for(service.proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    service.proc.kill()
                await service.proc.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await service.pump
        return service.proc.returncode

    async def stop(self, *, grace: float = 30.0) -> None:
        """Stop every service, restarts off: each gets ``grace`` seconds to drain its calls."""
        self._stopping = True
        for keeper in self._keepers.values():
            keeper.cancel()
        await asyncio.gather(*self._keepers.values(), return_exceptions=True)
        # Gateway first so no new work arrives, then the services in parallel.
        await self.stop_service("gateway", grace=grace)
        await asyncio.gather(*(self.stop_service(n, grace=grace) for n in list(self.processes)))
