"""LLM streaming overhead: added time-to-first-token, throughput and CPU per stream of our
gRPC StreamComplete and of the gateway's bridge SSE route, against the fake upstream alone and
against LiteLLM's proxy and Portkey's gateway in front of the same fake.

The fake (``python -m tests.fakes.openai``, its own process) answers every request with 50 tokens,
20 ms to the first and 5 ms between tokens, in Chat Completions or Responses SSE. An asyncio
load generator in this process runs closed loops of N concurrent streams.

Fairness on a 2-core machine (``bench.cpu_pinning``): the system under test (llm + gateway, or
the peer proxy) gets CPU 1 to itself, every thread of it; everything auxiliary (this load
generator and the fake Mattermost in this process, the fake upstream, the index/registry and the
cluster's other services, PostgreSQL) shares CPU 0. Added TTFT is measured against the direct
baseline at the same concurrency in the same round, which absorbs the generator's own queueing.

Hygiene: every target (peers included) is started first, then each of BENCH_LLM_REPEATS rounds
(default 3) runs every concurrency level of every target in turn, so that the targets compared
share the machine's state of the moment (it is shared). A level is one warm-up round at its
concurrency, then a closed loop for BENCH_LLM_LEVEL_SECONDS (10) or BENCH_LLM_LEVEL_STREAMS (1,000)
streams, whichever comes first. The table gives the median over the rounds with the min-max, the
ratio of each target's streams/s to Portkey's in the same round, the generator's CPU (gen%), the
share of the level its event loop thread ran or waited for a CPU (loop%, from schedstat) and CPU 0's
utilisation (cpu0%; on a shared machine others' work shows there too). A level with loop% ≥ 90 is
flagged: the generator could not keep up, so its req/s is a lower bound and its ratios are marked !.

Environment: BENCH_LLM_CONCURRENCY (default "1,50,100,500"), BENCH_LLM_QUICK=1 (c=1 and 50, one
round of 2 s levels), BENCH_LLM_PEERS=0 (skip LiteLLM/Portkey), BENCH_LLM_INSTALL_PEERS=1 (install
them into .tools/ first), BENCH_LLM_PROFILE=1 (run the llm under pyinstrument and print where time goes),
BENCH_LLM_WORKERS=N (N worker processes each for the llm and the gateway, all on the SUT's CPU),
BENCH_LLM_TARGETS (comma-separated name fragments, e.g. "direct,llm gRPC": only the targets whose
name holds one; the direct baselines must stay for added TTFT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
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
from bench.stats import Spread
from services.cluster.supervisor import ServiceProcess, free_port
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres

QUICK = os.environ.get("BENCH_LLM_QUICK") == "1"
CONCURRENCY = [
    int(c) for c in os.environ.get("BENCH_LLM_CONCURRENCY", "1,50" if QUICK else "1,50,100,500").split(",") if c
]
REPEATS = int(os.environ.get("BENCH_LLM_REPEATS", "1" if QUICK else "3"))
LEVEL_SECONDS = float(os.environ.get("BENCH_LLM_LEVEL_SECONDS", "2" if QUICK else "10"))
LEVEL_STREAMS = int(os.environ.get("BENCH_LLM_LEVEL_STREAMS", "200" if QUICK else "1000"))
WITH_PEERS = os.environ.get("BENCH_LLM_PEERS", "1") != "0"
PROFILE = os.environ.get("BENCH_LLM_PROFILE") == "1"
WORKERS = os.environ.get("BENCH_LLM_WORKERS", "1")
TARGETS = [t for t in os.environ.get("BENCH_LLM_TARGETS", "").split(",") if t]
TTFT_MS, TOKEN_DELAY_MS, TOKENS = 20, 5, 50
ADMIN = Identity(permissions=frozenset({MANAGE_SYSTEM}))
PORTKEY = "Portkey gateway"
PROFILE_FILE = "llm-profile.txt"


@dataclass(frozen=True)
class Target:
    """One thing to measure: its stream function and the processes whose CPU it costs."""

    name: str
    fn: StreamFn
    pids: Sequence[int] = ()


async def start_fake(
    port: int, *, ttft_ms: float = TTFT_MS, token_delay_ms: float = TOKEN_DELAY_MS, tokens: int = TOKENS
) -> asyncio.subprocess.Process:
    """The fake upstream in its own process on CPU 0, once it answers."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.openai",
        "--port",
        str(port),
        "--ttft-ms",
        str(ttft_ms),
        "--token-delay-ms",
        str(token_delay_ms),
        "--tokens",
        str(tokens),
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


async def probe(target: Target) -> bool:
    """A few sequential streams (connections, caches, provider instances); False if they fail."""
    try:
        for _ in range(5):
            await target.fn()
    except Exception as exc:
        print(f"  {target.name} skipped: warm-up failed: {type(exc).__name__}: {exc}"[:300], flush=True)
        return False
    return True


@contextlib.asynccontextmanager
async def cluster_targets(
    fake_url: str, http: aiohttp.ClientSession, work: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[ClusterHarness, list[Target]]]:
    """The cluster, running, and our targets on it: gRPC StreamComplete (chat and Responses
    upstreams) and the bridge SSE route of agent ``benchbot``. The llm's profile (PROFILE) is
    written to ``work``/llm-profile.txt when it stops."""
    postgres = SessionPostgres(work / "pg")
    await postgres.start()
    if (pg := postmaster_pid(work / "pg")) is not None:
        pin_process(pg, AUXILIARY_CPUS)  # and its backends; ones forked later inherit CPU 0
    plugin_secret = secrets.token_hex(32)
    env = {
        "AGENTS_TELEMETRY_OUTPUT": "off",
        "AGENTS_LOG_LEVEL": "WARNING",
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"bench={plugin_secret}",
        "AGENTS_LLM_WORKERS": WORKERS,
        "AGENTS_GATEWAY_WORKERS": WORKERS,
        **(extra_env or {}),
    }
    try:
        async with ClusterHarness(postgres, env=env, log_sink=lambda *_: None) as h:
            assert h.cluster is not None
            if PROFILE:
                await _restart_llm_profiled(h, work / PROFILE_FILE)
            for name, service in h.cluster.processes.items():
                pin_process(service.proc.pid, SUT_CPUS if name in ("llm", "gateway") else AUXILIARY_CPUS)
            chat_id, responses_id = await _seed(h, fake_url)
            llm_pid = h.cluster.processes["llm"].proc.pid
            gateway_pid = h.cluster.processes["gateway"].proc.pid
            url = f"{h.gateway_url}{PLUGIN}/bridge/v1/completion/agent/benchbot"
            # The plugin's own credential and no user_id (so no access checks): a plugin's own call.
            headers = {"Mattermost-Plugin-ID": "bench", "X-Agents-Plugin-Secret": plugin_secret}
            async with h.channel("llm") as channel:
                metadata = h.metadata()
                yield (
                    h,
                    [
                        Target("llm gRPC (chat)", grpc_client(channel, chat_id, metadata), [llm_pid]),
                        Target("llm gRPC (responses)", grpc_client(channel, responses_id, metadata), [llm_pid]),
                        Target("gateway SSE → llm", bridge_client(http, url, headers), [gateway_pid, llm_pid]),
                    ],
                )
    finally:
        await postgres.stop()


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
        env=(env := h.cluster.environment()),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def idle() -> None:
        await process.wait()

    h.cluster.processes["llm"] = ServiceProcess(
        "llm", process, asyncio.create_task(idle()), env=env, module="services.llm"
    )
    await h.cluster.wait_healthy(names=("llm",), timeout=60)


@contextlib.asynccontextmanager
async def peer_targets(fake_url: str, http: aiohttp.ClientSession, notes: list[str]) -> AsyncIterator[list[Target]]:
    """LiteLLM's proxy and Portkey's gateway, running (those installed), each pinned to CPU 1."""
    if os.environ.get("BENCH_LLM_INSTALL_PEERS") == "1":
        await asyncio.to_thread(peers.install_peers)
    work = Path(tempfile.mkdtemp(prefix="agents-bench-peers-"))
    running: list[peers.Peer] = []
    try:
        for start in (
            lambda: peers.start_litellm(fake_url, free_port(), work),
            lambda: peers.start_portkey(fake_url, free_port()),
        ):
            peer = await start()
            if isinstance(peer, str):
                notes.append(peer)
                print(peer, flush=True)
                continue
            running.append(peer)
            pin_process(peer.process.pid, SUT_CPUS)  # with its workers (LiteLLM) and their threads
            if peer.note:
                notes.append(peer.note)
        yield [Target(p.name, chat_client(http, p.base_url, p.headers), [p.process.pid]) for p in running]
    finally:
        for peer in running:
            await peer.stop()
        shutil.rmtree(work, ignore_errors=True)


async def measure(targets: list[Target]) -> list[LevelResult]:
    """Every round runs every level of every target in turn (interleaved: a shared machine's
    load changes over minutes, and the ratios compare targets measured moments apart)."""
    results: list[LevelResult] = []
    for repeat in range(REPEATS):
        for concurrency in CONCURRENCY:
            for target in targets:
                result = await run_level(
                    target.name,
                    target.fn,
                    concurrency,
                    seconds=LEVEL_SECONDS,
                    max_streams=LEVEL_STREAMS,
                    pids=target.pids,
                    repeat=repeat,
                )
                results.append(result)
                flag = "  (generator saturated)" if result.generator_saturated else ""
                print(
                    f"  round {repeat + 1}/{REPEATS} {target.name} c={concurrency}: {len(result.ttft)} streams"
                    f" in {result.wall:.1f}s, {result.rps:.1f}/s{flag}",
                    flush=True,
                )
    return results


def _base_name(target: str) -> str:
    return "fake direct (responses)" if "responses" in target else "fake direct (chat)"


def print_table(results: list[LevelResult], notes: list[str]) -> None:
    """Medians over the rounds with (min-max); added TTFT and the ratio to Portkey are paired per round."""
    by_round = {(r.target, r.concurrency, r.repeat): r for r in results}
    levels: dict[tuple[str, int], list[LevelResult]] = defaultdict(list)
    for r in results:
        levels[(r.target, r.concurrency)].append(r)
    # Characters per answer, from the direct runs: turns received text back into tokens.
    direct = [r for r in results if r.target.startswith("fake direct") and r.ttft]
    chars_per_token = (sum(r.chars for r in direct) / sum(len(r.ttft) for r in direct) / TOKENS) if direct else 1.0
    header = (
        f"{'target':<25}{'c':>4}{'n':>6}{'req/s':>22}{'ttft p50':>22}{'ttft p99':>22}{'+p50':>8}{'+p99':>8}"
        f"{'tok/s':>7}{'err':>4}{'cpu ms/str':>20}{'gen%':>5}{'loop%':>6}{'cpu0%':>6}{'x Portkey':>20}"
    )
    print()
    print(
        f"LLM streaming: 50 tokens, fake TTFT 20 ms, 5 ms/token; {REPEATS} round(s) of {LEVEL_SECONDS:g} s or"
        f" {LEVEL_STREAMS} streams per level; median (min-max); times in ms; +p50/+p99 = added TTFT vs direct"
    )
    print(header)
    print("-" * len(header))
    for (target, concurrency), rounds in levels.items():
        pairs = [(r, by_round.get((_base_name(target), concurrency, r.repeat))) for r in rounds]
        added = [(r.ttft_p50 - b.ttft_p50, r.ttft_p99 - b.ttft_p99) for r, b in pairs if b is not None and b is not r]
        added_cols = (
            f"{statistics.median(a for a, _ in added) * 1000:8.1f} {statistics.median(a for _, a in added) * 1000:7.1f}"
            if added
            else f"{'-':>8}{'-':>8}"
        )
        ratios = _ratios(rounds, by_round)
        tps = statistics.median(r.chars / chars_per_token / r.wall for r in rounds if r.wall)
        cpu = Spread.of([r.cpu_ms_per_stream for r in rounds if r.cpu_seconds])
        print(
            f"{target:<25}{concurrency:>4}{sum(len(r.ttft) for r in rounds):>6}"
            f" {Spread.of([r.rps for r in rounds]).format():>21}"
            f" {Spread.of([r.ttft_p50 * 1000 for r in rounds]).format(2):>21}"
            f" {Spread.of([r.ttft_p99 * 1000 for r in rounds]).format(2):>21}{added_cols}"
            f"{tps:7.0f}{sum(r.errors for r in rounds):>4} {cpu.format(2):>19}"
            f"{max(r.generator_cpu for r in rounds) * 100:5.0f}{max(r.generator_demand for r in rounds) * 100:6.0f}"
            f"{max(r.cpu0_busy for r in rounds) * 100:6.0f}"
            f"{ratios:>20}"
        )
    _print_notes(results, notes)


def _ratios(rounds: list[LevelResult], by_round: dict[tuple[str, int, int], LevelResult]) -> str:
    """This level's streams/s over Portkey's, paired by round; ``!`` when the generator may have
    bounded either side (the ratio is then not the targets' own)."""
    pairs = [(r, by_round.get((PORTKEY, r.concurrency, r.repeat))) for r in rounds]
    pairs = [(r, p) for r, p in pairs if p is not None and p is not r and p.rps]
    if not pairs:
        return "-"
    spread = Spread.of([r.rps / p.rps for r, p in pairs]).format(2)
    return spread + ("!" if any(r.generator_saturated or p.generator_saturated for r, p in pairs) else "")


def _print_notes(results: list[LevelResult], notes: list[str]) -> None:
    for r in results:
        if r.first_error:
            print(f"  {r.target} c={r.concurrency} round {r.repeat + 1}: first error: {r.first_error}")
    saturated = sorted({(r.target, r.concurrency) for r in results if r.generator_saturated})
    if saturated:
        print(
            "  warning: the load generator saturated (loop%: its event loop thread running or waiting for"
            " a CPU >= 90 % of the level) at: " + ", ".join(f"{t} c={c}" for t, c in saturated) + "; those"
            " req/s are lower bounds of the target's own and ratios involving them are marked !"
        )
    for note in notes:
        print(f"  note: {note}")


async def run() -> None:
    pin_self(AUXILIARY_CPUS)  # before anything starts: children inherit it
    port = free_port()
    fake = await start_fake(port)
    fake_url = f"http://127.0.0.1:{port}/v1"
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="agents-bench-llm-"))
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))
            )
            print(f"fake upstream on {fake_url}; CPUs pinned: {ENABLED}; concurrency {CONCURRENCY}", flush=True)
            targets = [
                Target("fake direct (chat)", chat_client(http, fake_url)),
                Target("fake direct (responses)", responses_client(http, fake_url)),
            ]
            _, ours = await stack.enter_async_context(cluster_targets(fake_url, http, work))
            targets += ours
            if WITH_PEERS:
                targets += await stack.enter_async_context(peer_targets(fake_url, http, notes))
            else:
                notes.append("peers skipped (BENCH_LLM_PEERS=0)")
            chosen = [t for t in targets if not TARGETS or any(f in t.name for f in TARGETS)]
            results = await measure([t for t in chosen if await probe(t)])
    finally:
        fake.terminate()
        await fake.wait()
    print_table(results, notes)
    if PROFILE and (work / PROFILE_FILE).exists():
        print("\npyinstrument profile of the llm service during the run:\n")
        print((work / PROFILE_FILE).read_text())
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    asyncio.run(run())
