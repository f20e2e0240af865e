"""The Mattermost MCP server: what a sealed session id costs per request, and the tools/call
throughput of one mcp process.

1. Sealing: ``SessionSealer.seal`` and ``open`` (AES-256-GCM) in a loop, microseconds per call.
2. Throughput: one real ``python -m services.mcp`` process; ``BENCH_MCP_CONCURRENCY`` (16) callers
   send ``tools/call get_team_info`` over ``EmbeddedServer.ServeHttp`` (as the gateway does) for
   ``BENCH_MCP_SECONDS`` (10; 600 for the issue's flat-over-10-minutes check), once with a sealed
   ``Mcp-Session-Id`` and once without: their difference is what carrying the session costs end
   to end. Each call checks the token at the fake Mattermost and reads the
   user's teams with it (two Mattermost requests); the fake runs in this process, on the load's
   event loop, so the rates are a floor for the server, not its ceiling; the mcp process's CPU
   per call bounds what one process can do (1000 / that = calls per second on one core).

Run: ``.venv/bin/python -m bench mcp_server``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import sys
import time
import timeit

import grpc
import psutil
from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from agents.mcp.v1 import embedded_server_pb2_grpc as embedded_server_pb2_grpc

from bench.stats import percentile
from services.cluster.supervisor import free_port
from services.common.identity import SERVICE_TOKEN_KEY
from services.mcp.embedded.sessions import SessionSealer
from tests.fakes.mattermost import FakeMattermost
from tests.harness import wait_serving

SECONDS = float(os.environ.get("BENCH_MCP_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_MCP_CONCURRENCY", "16"))
WINDOW = 5.0  # seconds per throughput window, to show whether the rate stays flat
LEGACY = "2025-11-25"


def sealing_cost() -> tuple[float, float]:
    sealer = SessionSealer(secrets.token_bytes(32), 3600)
    session_id = sealer.seal("u" * 26, LEGACY)
    n = 20_000
    seal = timeit.timeit(lambda: sealer.seal("u" * 26, LEGACY), number=n) / n
    opened = timeit.timeit(lambda: sealer.open(session_id), number=n) / n
    return seal * 1e6, opened * 1e6


def exchange(host: str, token: str, body: dict, extra: list[tuple[str, str]]) -> embedded_server_pb2.ServeHttpRequest:
    headers = [
        ("Host", host),
        ("Authorization", f"Bearer {token}"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        *extra,
    ]
    return embedded_server_pb2.ServeHttpRequest(
        method="POST",
        path="/mcp",
        headers=[embedded_server_pb2.HttpHeader(name=n, value=v) for n, v in headers],
        body=json.dumps(body).encode(),
    )


async def answer(stub: embedded_server_pb2_grpc.EmbeddedServerStub, request, metadata) -> tuple[int, dict, bytes]:
    status, headers, body = 0, {}, b""
    async for part in stub.ServeHttp(request, metadata=metadata, timeout=30):
        if part.HasField("head"):
            status, headers = part.head.status, {h.name.lower(): h.value for h in part.head.headers}
        else:
            body += part.body_chunk
    return status, headers, body


async def load(stub, call: embedded_server_pb2.ServeHttpRequest, metadata) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    windows = [0] * max(1, int(SECONDS // WINDOW))
    start = time.perf_counter()

    async def caller() -> None:
        while (elapsed := time.perf_counter() - start) < SECONDS:
            t = time.perf_counter()
            status, _, body = await answer(stub, call, metadata)
            assert status == 200 and b'"isError":false' in body, (status, body[:200])
            latencies.append(time.perf_counter() - t)
            windows[min(len(windows) - 1, int(elapsed // WINDOW))] += 1

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return latencies, windows


async def run() -> None:
    seal_us, open_us = sealing_cost()
    async with FakeMattermost() as mm:
        user = mm.add_user("bench-mcp")
        team = mm.add_team("bench-team")
        mm.add_member(team, user)
        port, token = free_port("127.0.0.1"), secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "AGENTS_MATTERMOST_URL": mm.url,
            "AGENTS_MCP_GRPC_PORT": str(port),
            "AGENTS_SERVICE_TOKEN": token,
            "AGENTS_MCP_SERVER_SESSION_KEY": secrets.token_urlsafe(32),
            "AGENTS_LOG_LEVEL": "WARNING",
        }
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "services.mcp", env=env)
        server = psutil.Process(proc.pid)
        try:
            await wait_serving(port)
            host = mm.url.split("//", 1)[1]
            metadata = [(SERVICE_TOKEN_KEY, token)]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = embedded_server_pb2_grpc.EmbeddedServerStub(channel)
                init = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": LEGACY,
                        "capabilities": {},
                        "clientInfo": {"name": "b", "version": "1"},
                    },
                }
                _, headers, _ = await answer(stub, exchange(host, user.token, init, []), metadata)
                session = [("Mcp-Session-Id", headers["mcp-session-id"]), ("MCP-Protocol-Version", LEGACY)]
                params = {"name": "get_team_info", "arguments": {"team_id": team.id}}
                body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}
                runs = {}
                # The same request but for the session id: the difference is what the session costs.
                no_session = [("MCP-Protocol-Version", LEGACY)]
                for label, extra in (("sealed session", session), ("no session id", no_session)):
                    call = exchange(host, user.token, body, extra)
                    for _ in range(50):  # warm-up
                        await answer(stub, call, metadata)
                    cpu_before = sum(server.cpu_times()[:2])
                    runs[label] = (*await load(stub, call, metadata), sum(server.cpu_times()[:2]) - cpu_before)
        finally:
            proc.terminate()
            await proc.wait()

    print("\n== mcp_server: sealed sessions and tools/call throughput (one mcp process) ==")
    print(f"{'measure':<52}{'value':>12}")
    print(f"{'seal a session id (AES-256-GCM)':<52}{seal_us:>10.1f}us")
    print(f"{'open a session id (every request that carries one)':<52}{open_us:>10.1f}us")
    for label, (latencies, windows, cpu) in runs.items():
        ms = [x * 1000 for x in latencies]
        rates = [round(w / WINDOW) for w in windows]
        print(
            f"{'tools/call ' + label + ' p50 (' + str(CONCURRENCY) + ' in flight)':<52}{statistics.median(ms):>10.2f}ms"
        )
        print(f"{'tools/call ' + label + ' p99':<52}{percentile(ms, 99):>10.2f}ms")
        print(f"{'tools/call ' + label + ' throughput':<52}{len(ms) / SECONDS:>9.0f} r/s")
        # CPU of the mcp process per call: what bounds one process's rate, whatever else runs.
        print(f"{'tools/call ' + label + ' mcp process CPU per call':<52}{cpu / len(ms) * 1000:>10.2f}ms")
        first_last = f"{rates[0]} .. {rates[-1]}"
        print(f"{'  r/s per ' + str(int(WINDOW)) + ' s window (first .. last)':<52}{first_last:>12}")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
