"""The MCP paths of the mcp service: the Mattermost MCP server's cost per request and throughput,
what our remote-server client path adds to a tool call, and whether sessions opened and closed by
the thousand leave anything behind.

The whole cluster runs as real processes (tests/harness.py, tracing off); every measure is of the
one mcp process, by psutil: CPU seconds per call (1000 / ms per call = calls per second one core
could serve, whatever else the shared machine runs), RSS and open file descriptors.

1. Sealing: ``SessionSealer.seal`` and ``open`` (AES-256-GCM) in a loop, microseconds per call.
2. Throughput: ``BENCH_MCP_CONCURRENCY`` (16) callers send ``tools/call get_team_info`` over
   ``EmbeddedServer.ServeHttp`` (as the gateway does) for ``BENCH_MCP_SECONDS`` (10; 600 for the
   issue's flat-over-10-minutes check), once with a sealed ``Mcp-Session-Id``, once without
   (their difference is what carrying the session costs), and once in the 2026-07-28 era. Calls
   per second per window (5 s; a minute for runs of two minutes or more) and the RSS at the start
   and end show whether it stays flat.
   Each call reads the user's teams at the fake Mattermost (the token check is cached), which runs
   in this process: latencies and rates are a floor, the CPU per call is the server's own.
3. Warm ``tools/call`` of a remote server (the SDK's ``MCPServer``), through our client path
   (``MCP.CallTool`` over gRPC: the user's pooled session in services/mcp/sessions.py) and by the
   SDK's client calling the server directly, interleaved, ``BENCH_MCP_CALLS`` (500) each: what our
   path adds at p50 and p99.
4. Session cycles, ``BENCH_MCP_CYCLES`` (10,000) of the embedded server (``initialize``, a call
   with the sealed id, ``DELETE``), and ``BENCH_MCP_REMOTE_CYCLES`` (as many) of remote sessions (a
   new user's call opens a session, which then idles out and is closed with ``DELETE``; each costs
   several times an embedded cycle). The mcp process's RSS and open files before, and after every
   session is gone.

Run: ``.venv/bin/python -m bench mcp_server``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from agents.mcp.v1 import embedded_server_pb2_grpc as embedded_server_pb2_grpc
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from google.protobuf import struct_pb2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from bench.stats import percentile, print_rows
from services.common.identity import Identity
from services.mcp.embedded.sessions import SessionSealer
from tests.fakes.mcp_remote import FakeMcpServer
from tests.harness import ClusterHarness, SessionPostgres
from tests.polling import poll

SECONDS = float(os.environ.get("BENCH_MCP_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("BENCH_MCP_CONCURRENCY", "16"))
CALLS = int(os.environ.get("BENCH_MCP_CALLS", "500"))
CYCLES = int(os.environ.get("BENCH_MCP_CYCLES", "10000"))
REMOTE_CYCLES = int(os.environ.get("BENCH_MCP_REMOTE_CYCLES", str(CYCLES)))
# Seconds per throughput window, to show whether the rate stays flat.
WINDOW = 60.0 if SECONDS >= 120 else 5.0
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ENV = {
    "AGENTS_TELEMETRY_OUTPUT": "off",
    "AGENTS_LOG_LEVEL": "WARNING",
    "AGENTS_INDEX_LICENSE": "enterprise",
    # The fake remote server listens on loopback; an operator opens exactly that host to MCP servers.
    "AGENTS_MCP_PRIVATE_ALLOWED_HOSTNAMES": "127.0.0.1",
    # Remote sessions idle out after a second (the sweep looks four times per timeout).
    "AGENTS_MCP_IDLE_TIMEOUT_SECONDS": "1",
    # The cycles measure what sessions leave behind, not deadlines: a loaded machine must not cut them.
    "AGENTS_MCP_CONNECT_TIMEOUT_SECONDS": "60",
    "AGENTS_MCP_CALL_TIMEOUT_SECONDS": "60",
}
SERVICE = {"id": "svc", "name": "svc", "type": "openai", "apiKey": "sk-bench"}

Row = tuple[str, str]


def sealing_cost() -> list[Row]:
    sealer = SessionSealer(secrets.token_bytes(32), 3600)
    session_id = sealer.seal("u" * 26, LEGACY)
    n = 20_000
    seal = timeit.timeit(lambda: sealer.seal("u" * 26, LEGACY), number=n) / n
    opened = timeit.timeit(lambda: sealer.open(session_id), number=n) / n
    return [
        ("seal a session id (AES-256-GCM)", f"{seal * 1e6:.1f}us"),
        ("open a session id (every request that carries one)", f"{opened * 1e6:.1f}us"),
    ]


class Probe:
    """The mcp process's CPU seconds, RSS and open files."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)

    def cpu(self) -> float:
        return sum(self.process.cpu_times()[:2])

    def rss_mib(self) -> float:
        return self.process.memory_info().rss / 2**20

    def fds(self) -> int:
        return self.process.num_fds()


class Embedded:
    """HTTP exchanges with the Mattermost MCP server over ``EmbeddedServer.ServeHttp``, as one user."""

    def __init__(self, h: ClusterHarness, channel: grpc.aio.Channel, token: str, team_id: str) -> None:
        self.stub = embedded_server_pb2_grpc.EmbeddedServerStub(channel)
        self.metadata = h.metadata()
        self.host = h.mattermost.url.split("//", 1)[1]
        self.token = token
        self.team_id = team_id
        self.call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "get_team_info", "arguments": {"team_id": team_id}},
        }

    def request(
        self, body: dict[str, Any] | None, extra: list[tuple[str, str]], method: str = "POST"
    ) -> embedded_server_pb2.ServeHttpRequest:
        headers = [
            ("Host", self.host),
            ("Authorization", f"Bearer {self.token}"),
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            *extra,
        ]
        return embedded_server_pb2.ServeHttpRequest(
            method=method,
            path="/mcp",
            headers=[embedded_server_pb2.HttpHeader(name=n, value=v) for n, v in headers],
            body=json.dumps(body).encode() if body is not None else b"",
            head_with_body=True,
        )

    async def answer(self, request: embedded_server_pb2.ServeHttpRequest) -> tuple[int, dict[str, str], bytes]:
        status, headers, body = 0, {}, b""
        async for part in self.stub.ServeHttp(request, metadata=self.metadata, timeout=30):
            if part.HasField("head"):
                status, headers = part.head.status, {h.name.lower(): h.value for h in part.head.headers}
                body += part.head.body
            else:
                body += part.body_chunk
        return status, headers, body

    async def initialize(self) -> str:
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}},
        }
        status, headers, body = await self.answer(self.request(init, []))
        assert status == 200, (status, body[:200])
        return headers["mcp-session-id"]

    async def tool_call(self, request: embedded_server_pb2.ServeHttpRequest) -> None:
        status, _, body = await self.answer(request)
        assert status == 200 and b'"isError":false' in body, (status, body[:200])

    async def cycle(self) -> None:
        """A client's whole session: initialize, one call, then DELETE (405: nothing is held)."""
        session = [("Mcp-Session-Id", await self.initialize()), ("MCP-Protocol-Version", LEGACY)]
        await self.tool_call(self.request(self.call, session))
        status, _, _ = await self.answer(self.request(None, session, method="DELETE"))
        assert status == 405, status


async def concurrently(n: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``one(0) .. one(n - 1)``, ``CONCURRENCY`` at a time."""
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def load(embedded: Embedded, call: embedded_server_pb2.ServeHttpRequest) -> tuple[list[float], list[int]]:
    """``CONCURRENCY`` callers sending ``call`` for ``SECONDS``: latencies, and calls per window."""
    latencies: list[float] = []
    windows = [0] * max(1, int(SECONDS // WINDOW))
    start = time.perf_counter()

    async def caller() -> None:
        while (elapsed := time.perf_counter() - start) < SECONDS:
            t = time.perf_counter()
            await embedded.tool_call(call)
            latencies.append(time.perf_counter() - t)
            windows[min(len(windows) - 1, int(elapsed // WINDOW))] += 1

    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return latencies, windows


async def throughput(embedded: Embedded, probe: Probe) -> list[Row]:
    session = [("Mcp-Session-Id", await embedded.initialize()), ("MCP-Protocol-Version", LEGACY)]
    # The same request but for the session id: the difference is what the session costs (a long
    # run, the flatness check, measures the sealed session only).
    # The 2026-07-28 era: each call carries its envelope, and the SDK serves it in one exchange,
    # as services/mcp/embedded/single.py serves the handshake era's calls.
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "b", "version": "1"},
    }
    params = {"name": "get_team_info", "arguments": {"team_id": embedded.team_id}, "_meta": meta}
    modern = {**embedded.call, "params": params}
    modern_headers = [("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/call"), ("Mcp-Name", "get_team_info")]
    labels = [
        ("sealed session", embedded.call, session),
        ("no session id", embedded.call, [("MCP-Protocol-Version", LEGACY)]),
        (MODERN, modern, modern_headers),
    ]
    rows: list[Row] = []
    for label, body, extra in labels[:1] if SECONDS >= 120 else labels:
        call = embedded.request(body, extra)
        for _ in range(50):  # warm-up
            await embedded.tool_call(call)
        rss_start, cpu_start = probe.rss_mib(), probe.cpu()
        latencies, windows = await load(embedded, call)
        cpu, rss_end = probe.cpu() - cpu_start, probe.rss_mib()
        ms = [x * 1000 for x in latencies]
        name = f"tools/call {label}"
        rows += [
            (f"{name} p50 ({CONCURRENCY} in flight)", f"{statistics.median(ms):.2f}ms"),
            (f"{name} p99", f"{percentile(ms, 99):.2f}ms"),
            (f"{name} throughput", f"{len(ms) / SECONDS:.0f} r/s"),
            # What bounds one process's rate, whatever else runs on the machine.
            (f"{name} mcp process CPU per call", f"{cpu / len(ms) * 1000:.2f}ms"),
            (f"  r/s per {WINDOW:.0f} s window", " ".join(str(round(w / WINDOW)) for w in windows)),
            ("  mcp RSS at start .. end", f"{rss_start:.0f} .. {rss_end:.0f} MiB"),
        ]
    return rows


def resources(label: str, before: tuple[float, int], after: tuple[float, int]) -> list[Row]:
    return [
        (
            f"{label}: mcp RSS before .. after",
            f"{before[0]:.0f} .. {after[0]:.0f} MiB ({after[0] / before[0] - 1:+.0%})",
        ),
        (f"{label}: mcp open files before .. after", f"{before[1]} .. {after[1]}"),
    ]


async def embedded_cycles(embedded: Embedded, probe: Probe) -> list[Row]:
    before = (probe.rss_mib(), probe.fds())
    cpu, start = probe.cpu(), time.perf_counter()
    await concurrently(CYCLES, lambda _: embedded.cycle())
    seconds, cpu = time.perf_counter() - start, probe.cpu() - cpu
    rows = [(f"embedded: {CYCLES} session cycles", f"{seconds:.0f}s, {cpu / CYCLES * 1000:.2f}ms CPU each")]
    rows += [("embedded: mcp open files right after", f"{probe.fds()} (Mattermost keep-alive pool included)")]
    # The tools' Mattermost connections stay pooled until aiohttp's keep-alive timeout (15 s) ends.
    idle = time.perf_counter()
    await poll(
        lambda: probe.fds() <= before[1] * 1.1,
        within=60,
        interval=0.5,
        message=lambda: f"open files {before[1]} .. {probe.fds()} a minute after the cycles",
    )
    rows += [("embedded: open files back within 10 % after", f"{time.perf_counter() - idle:.0f}s")]
    return rows + resources("embedded", before, (probe.rss_mib(), probe.fds()))


class Remote:
    """Tool calls of the fake remote server: through the mcp service, and straight from the SDK."""

    def __init__(self, h: ClusterHarness, channel: grpc.aio.Channel, server: FakeMcpServer) -> None:
        self.h = h
        self.stub = mcp_pb2_grpc.MCPStub(channel)
        self.server = server
        self.arguments = struct_pb2.Struct()
        self.arguments.update({"text": "hi"})

    async def call(self, user_id: str) -> None:
        reply = await self.stub.CallTool(
            mcp_pb2.CallToolRequest(server_origin=self.server.url, tool_name="echo", arguments=self.arguments),
            metadata=self.h.metadata(Identity(user_id=user_id)),
            timeout=30,
        )
        assert reply.content == "hi" and not reply.is_error, reply


async def warm_calls(remote: Remote) -> list[Row]:
    user = "benchwarm" + "0" * 17
    ours: list[float] = []
    direct: list[float] = []
    async with Client(streamable_http_client(remote.server.url), client_info=None) as client:
        for _ in range(50):  # warm-up: both sessions open, pools filled
            await remote.call(user)
            await client.call_tool("echo", {"text": "hi"})
        for _ in range(CALLS):  # interleaved: both see the same machine
            t = time.perf_counter()
            await remote.call(user)
            ours.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            result = await client.call_tool("echo", {"text": "hi"})
            direct.append((time.perf_counter() - t) * 1000)
            assert not result.is_error
    rows: list[Row] = []
    for p in (50, 99):
        ours_p, direct_p = percentile(ours, p), percentile(direct, p)
        rows += [
            (f"remote tools/call p{p}: our client path", f"{ours_p:.2f}ms"),
            (f"remote tools/call p{p}: SDK client direct", f"{direct_p:.2f}ms"),
            (f"remote tools/call p{p}: added by our path", f"{ours_p - direct_p:.2f}ms"),
        ]
    return rows


async def remote_cycles(remote: Remote, probe: Probe) -> list[Row]:
    before = (probe.rss_mib(), probe.fds())
    opened, deleted = remote.server.methods["initialize"], remote.server.http_methods["DELETE"]
    cpu, start = probe.cpu(), time.perf_counter()
    # Each cycle is a new user: one session opened, used once, then idled out.
    await concurrently(REMOTE_CYCLES, lambda i: remote.call(f"benchcycle{i:016d}"))
    seconds = time.perf_counter() - start
    opened = remote.server.methods["initialize"] - opened

    def connections() -> int:
        return sum(1 for c in probe.process.net_connections("tcp") if c.raddr and c.raddr.port == remote.server.port)

    # Every session is gone once the mcp process holds no connection to the server.
    await poll(lambda: connections() == 0, within=120, interval=0.5, message=lambda: f"{connections()} left open")
    closed = remote.server.http_methods["DELETE"] - deleted
    cpu = probe.cpu() - cpu
    rows = [
        (f"remote: {REMOTE_CYCLES} session cycles", f"{seconds:.0f}s, {cpu / REMOTE_CYCLES * 1000:.2f}ms CPU each"),
        # A session whose goodbye outlasts its grace is cut without one: the server expires it.
        ("remote: sessions opened .. closed with DELETE", f"{opened} .. {closed}"),
    ]
    return rows + resources("remote", before, (probe.rss_mib(), probe.fds()))


async def configure(h: ClusterHarness, server: FakeMcpServer) -> None:
    admin = h.mattermost.add_user("bench-admin", roles="system_user system_admin")
    document = {"services": [SERVICE], "mcp": {"servers": [{"name": "bench", "enabled": True, "baseURL": server.url}]}}
    status, body, _ = await h.request("PUT", "/admin/config", user=admin, json_body=document)
    assert status == 200, body

    async def listed() -> bool:
        status, body = await h.get("/mcp/tools", user=admin)
        return status == 200 and [s["name"] for s in body["servers"]] == ["bench"]

    await poll(listed, within=30, interval=0.2, message="the mcp service never listed the bench server")


async def run() -> list[Row]:
    rows = sealing_cost()
    work = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    postgres = SessionPostgres(work / "pg")
    await postgres.start()
    try:
        async with FakeMcpServer("bench", legacy=True) as server, ClusterHarness(postgres, env=ENV) as h:
            assert h.cluster is not None
            user = h.mattermost.add_user("bench-mcp")
            team = h.mattermost.add_team("bench-team")
            h.mattermost.add_member(team, user)
            await configure(h, server)
            probe = Probe(h.cluster.processes["mcp"].proc.pid)
            async with grpc.aio.insecure_channel(h.cluster.address("mcp")) as channel:
                embedded = Embedded(h, channel, user.token, team.id)
                remote = Remote(h, channel, server)
                rows += await throughput(embedded, probe)
                rows += await warm_calls(remote)
                rows += await embedded_cycles(embedded, probe)
                rows += await remote_cycles(remote, probe)
    finally:
        await postgres.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    rows = asyncio.run(run())
    title = "mcp_server: the mcp process's MCP paths (CPU, RSS and open files by psutil)"
    print_rows(title, rows, label_width=60, value_width=24)


if __name__ == "__main__":
    main()
