"""LLM streaming overhead: added time-to-first-token, throughput and CPU per stream of our
gRPC StreamComplete and of the gateway's bridge SSE route, against the fake upstream alone and
against LiteLLM's proxy and Portkey's gateway in front of the same fake.

The fake (``python -m tests.fakes.openai``, its own process) answers every request with 50 tokens,
20 ms to the first and 5 ms between tokens, in Chat Completions or Responses SSE. An asyncio
load generator in this process runs closed loops of N concurrent streams.

Fairness on a 2-core machine (``bench.cpu_pinning``): the system under test (llm + gateway, or
the peer proxy) gets CPU 1 to itself, every thread of it; everything auxiliary (this load
generator and the fake Mattermost in this process, the fake upstream, the index/registry and the
cluster's other services, PostgreSQL) shares CPU 0. Saturation of the generator shows as the
direct baseline's TTFT rising above ~2 x 20 ms; added TTFT is always measured against the
baseline at the same concurrency, which absorbs the generator's own queueing.

Environment: BENCH_LLM_CONCURRENCY (default "1,50,100,500"), BENCH_LLM_QUICK=1 (1 and 50, fewer
streams), BENCH_LLM_PEERS=0 (skip LiteLLM/Portkey), BENCH_LLM_INSTALL_PEERS=1 (install them into
.tools/ first), BENCH_LLM_PROFILE=1 (run the llm under pyinstrument and print where time goes),
BENCH_LLM_WORKERS=N (N worker processes each for the llm and the gateway, all on the SUT's CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from bench import llm_stream_peers as peers
from bench.cpu_pinning import AUXILIARY_CPUS, ENABLED, SUT_CPUS, pin_process, pin_self, postmaster_pid
from bench.llm_stream_clients import (
    LevelResult,
    StreamFn,
    bridge_client,
    chat_client,
    grpc_client,
    responses_client,
    run_level,
)
from services.cluster.supervisor import free_port
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres

QUICK = os.environ.get("BENCH_LLM_QUICK") == "1"
CONCURRENCY = [
    int(c) for c in os.environ.get("BENCH_LLM_CONCURRENCY", "1,50" if QUICK else "1,50,100,500").split(",") if c
]
WITH_PEERS = os.environ.get("BENCH_LLM_PEERS", "1") != "0"
PROFILE = os.environ.get("BENCH_LLM_PROFILE") == "1"
WORKERS = os.environ.get("BENCH_LLM_WORKERS", "1")
TTFT_MS, TOKEN_DELAY_MS, TOKENS = 20, 5, 50
ADMIN = Identity(permissions=frozenset({MANAGE_SYSTEM}))


def streams_for(concurrency: int) -> int:
    if QUICK:
        return max(20, 2 * concurrency)
    return max(60, 3 * concurrency)


async def start_fake(port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai",
        "--port",
        str(port),
        "--ttft-ms",
        str(TTFT_MS),
        "--token-delay-ms",
        str(TOKEN_DELAY_MS),
        "--tokens",
        str(TOKENS),
        stdout=asyncio.subprocess.DEVNULL,
    )
    pin_process(process.pid, AUXILIARY_CPUS)
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/v1/models") as resp:
                    if resp.status == 200:
                        return process
            await asyncio.sleep(0.05)
    raise RuntimeError("the fake upstream did not start")


async def measure(name: str, fn: StreamFn, pids: Sequence[int], results: list[LevelResult]) -> None:
    try:
        for _ in range(5):  # warm-up: connections, caches, provider instances
            await fn()
    except Exception as exc:
        print(f"  {name} skipped: warm-up failed: {type(exc).__name__}: {exc}"[:300], flush=True)
        return
    for concurrency in CONCURRENCY:
        result = await run_level(name, fn, concurrency, streams_for(concurrency), pids)
        results.append(result)
        print(f"  {name} c={concurrency}: {len(result.ttft)} streams in {result.wall:.1f}s", flush=True)


async def bench_cluster(fake_url: str, results: list[LevelResult], http: aiohttp.ClientSession) -> str:
    """Our targets: gRPC StreamComplete (chat and Responses upstreams) and the bridge SSE route."""
    work = Path(tempfile.mkdtemp(prefix="agents-bench-llm-"))
    postgres = SessionPostgres(work / "pg")
    await postgres.start()
    if (pg := postmaster_pid(work / "pg")) is not None:
        pin_process(pg, AUXILIARY_CPUS)  # and its backends; ones forked later inherit CPU 0
    profile_out = work / "llm-profile.txt"
    plugin_secret = secrets.token_hex(32)
    env = {
        "AGENTS_TELEMETRY_OUTPUT": "off",
        "AGENTS_LOG_LEVEL": "WARNING",
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"bench={plugin_secret}",
        "AGENTS_LLM_WORKERS": WORKERS,
        "AGENTS_GATEWAY_WORKERS": WORKERS,
    }
    try:
        async with ClusterHarness(postgres, env=env, log_sink=lambda *_: None) as h:
            assert h.cluster is not None
            if PROFILE:
                await _restart_llm_profiled(h, profile_out)
            for name, service in h.cluster.processes.items():
                pin_process(service.proc.pid, SUT_CPUS if name in ("llm", "gateway") else AUXILIARY_CPUS)
            chat_id, responses_id = await _seed(h, fake_url)
            llm_pid = h.cluster.processes["llm"].proc.pid
            gateway_pid = h.cluster.processes["gateway"].proc.pid
            async with h.channel("llm") as channel:
                metadata = h.metadata()
                await measure("llm gRPC (chat)", grpc_client(channel, chat_id, metadata), [llm_pid], results)
                await measure("llm gRPC (responses)", grpc_client(channel, responses_id, metadata), [llm_pid], results)
            url = f"{h.gateway_url}{PLUGIN}/bridge/v1/completion/agent/benchbot"
            # The plugin's own credential and no user_id (so no access checks): a plugin's own call.
            headers = {"Mattermost-Plugin-ID": "bench", "X-Agents-Plugin-Secret": plugin_secret}
            await measure("gateway SSE → llm", bridge_client(http, url, headers), [gateway_pid, llm_pid], results)
    finally:
        await postgres.stop()
    report = profile_out.read_text() if PROFILE and profile_out.exists() else ""
    shutil.rmtree(work, ignore_errors=True)
    return report


async def _seed(h: ClusterHarness, fake_url: str) -> tuple[str, str]:
    async with h.channel("index") as channel:
        registry = registry_pb2_grpc.RegistryStub(channel)
        ids = []
        for name, kind in (("bench-chat", "openaicompatible"), ("bench-responses", "openai")):
            reply = await registry.CreateService(
                registry_pb2.CreateServiceRequest(
                    service=registry_pb2.ServiceConfig(
                        name=name, type=kind, api_key="sk-bench", api_url=fake_url, default_model="gpt-4o"
                    )
                ),
                metadata=h.metadata(ADMIN),
                timeout=10,
            )
            ids.append(reply.service.id)
        await registry.CreateAgent(
            registry_pb2.CreateAgentRequest(
                agent=registry_pb2.Agent(username="benchbot", display_name="Bench", service_id=ids[0])
            ),
            metadata=h.metadata(ADMIN),
            timeout=10,
        )
    return ids[0], ids[1]


async def _restart_llm_profiled(h: ClusterHarness, out: Path) -> None:
    """Replace the llm process by one running under pyinstrument (written when it stops)."""
    assert h.cluster is not None
    await h.cluster.stop_service("llm")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pyinstrument",
        "-r",
        "text",
        "-o",
        str(out),
        "-m",
        "services.llm",
        env=h.cluster.environment(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    from services.cluster.supervisor import ServiceProcess

    async def idle() -> None:
        await process.wait()

    h.cluster.processes["llm"] = ServiceProcess("llm", process, asyncio.create_task(idle()))
    await h.cluster.wait_healthy(names=("llm",), timeout=60)


async def bench_peers(fake_url: str, results: list[LevelResult], http: aiohttp.ClientSession) -> list[str]:
    notes: list[str] = []
    if os.environ.get("BENCH_LLM_INSTALL_PEERS") == "1":
        await asyncio.to_thread(peers.install_peers)
    work = Path(tempfile.mkdtemp(prefix="agents-bench-peers-"))
    for start in (
        lambda: peers.start_litellm(fake_url, free_port(), work),
        lambda: peers.start_portkey(fake_url, free_port()),
    ):
        peer = await start()
        if isinstance(peer, str):
            notes.append(peer)
            print(peer, flush=True)
            continue
        pin_process(peer.process.pid, SUT_CPUS)  # with its workers (LiteLLM) and their threads
        if peer.note:
            notes.append(peer.note)
        try:
            await measure(peer.name, chat_client(http, peer.base_url, peer.headers), [peer.process.pid], results)
        finally:
            await peer.stop()
    shutil.rmtree(work, ignore_errors=True)
    return notes


def print_table(results: list[LevelResult], notes: list[str]) -> None:
    baselines = {(r.target, r.concurrency): r for r in results if r.target.startswith("fake direct")}
    # Characters per answer, from the direct runs: turns received text back into tokens.
    direct = [r for r in baselines.values() if r.ttft]
    chars_per_token = (sum(r.chars for r in direct) / sum(len(r.ttft) for r in direct) / TOKENS) if direct else 1.0
    header = (
        f"{'target':<24}{'c':>5}{'n':>6}{'ttft p50':>10}{'ttft p99':>10}{'+p50':>8}{'+p99':>8}"
        f"{'total p50':>11}{'req/s':>8}{'tok/s':>9}{'err':>5}{'cpu ms/str':>11}"
    )
    print()
    print("LLM streaming: 50 tokens, fake TTFT 20 ms, 5 ms/token; times in ms; +p50/+p99 = added TTFT vs direct")
    print(header)
    print("-" * len(header))
    for r in results:
        base_name = "fake direct (responses)" if "responses" in r.target else "fake direct (chat)"
        base = baselines.get((base_name, r.concurrency))
        added = (
            (f"{(r.ttft_p50 - base.ttft_p50) * 1000:8.2f}{(r.ttft_p99 - base.ttft_p99) * 1000:8.2f}")
            if base is not None and base is not r
            else f"{'-':>8}{'-':>8}"
        )
        rps = len(r.ttft) / r.wall if r.wall else 0.0
        cpu = f"{r.cpu_seconds / max(1, len(r.ttft)) * 1000:11.2f}" if r.cpu_seconds else f"{'-':>11}"
        tps = r.chars / chars_per_token / r.wall if r.wall else 0.0
        print(
            f"{r.target:<24}{r.concurrency:>5}{len(r.ttft):>6}{r.ttft_p50 * 1000:10.2f}{r.ttft_p99 * 1000:10.2f}"
            f"{added}{r.total_p50 * 1000:11.1f}{rps:8.1f}{tps:9.0f}{r.errors:>5}{cpu}"
        )
    for r in results:
        if r.first_error:
            print(f"  {r.target} c={r.concurrency}: first error: {r.first_error}")
    for base in baselines.values():
        if base.ttft_p50 > 2 * TTFT_MS / 1000:
            print(
                f"  note: {base.target} at c={base.concurrency} has TTFT p50 {base.ttft_p50 * 1000:.1f} ms"
                f" > 2 x {TTFT_MS} ms: the load generator (and fake) saturate CPU 0 at this level"
            )
    for note in notes:
        print(f"  note: {note}")


async def run() -> None:
    pin_self(AUXILIARY_CPUS)  # before anything starts: children inherit it
    port = free_port()
    fake = await start_fake(port)
    fake_url = f"http://127.0.0.1:{port}/v1"
    results: list[LevelResult] = []
    notes: list[str] = []
    profile = ""
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as http:
            print(f"fake upstream on {fake_url}; CPUs pinned: {ENABLED}; concurrency {CONCURRENCY}", flush=True)
            await measure("fake direct (chat)", chat_client(http, fake_url), [], results)
            await measure("fake direct (responses)", responses_client(http, fake_url), [], results)
            profile = await bench_cluster(fake_url, results, http)
            if WITH_PEERS:
                notes += await bench_peers(fake_url, results, http)
            else:
                notes.append("peers skipped (BENCH_LLM_PEERS=0)")
    finally:
        fake.terminate()
        await fake.wait()
    print_table(results, notes)
    if profile:
        print("\npyinstrument profile of the llm service during the run:\n")
        print(profile)


def main() -> None:
    asyncio.run(run())
