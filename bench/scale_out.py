"""Scale-out benchmark: bridge completions per second (gateway → llm → fake OpenAI, SSE back) and
DM conversations per second (a user's post → a gateway's WebSocket → llm → the reply streamed into
a post) with 1 and with 3 replicas of every service on this machine, a fixed number in flight. The
completions are spread over the gateways in turn; each DM is claimed by whichever gateway takes
it. Besides wall-clock rates it reports the cluster processes' CPU seconds per completion and per
conversation (less noisy than rates on a shared machine). On a machine with few cores the
replicas share them: the figures say what replicas cost or gain there, not what more machines would."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.llm_stream_clients import cpu_seconds
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import DEFAULT_ANSWER
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

REQUESTS = int(os.environ.get("BENCH_SCALE_REQUESTS", "300"))
CONCURRENCY = int(os.environ.get("BENCH_SCALE_CONCURRENCY", "24"))
CONVERSATIONS = int(os.environ.get("BENCH_SCALE_CONVERSATIONS", "100"))
CONVERSATION_CONCURRENCY = int(os.environ.get("BENCH_SCALE_CONVERSATION_CONCURRENCY", "8"))
REPLICAS = [int(n) for n in os.environ.get("BENCH_SCALE_REPLICAS", "1,3").split(",")]
PLUGIN_ID = "com.example.bench"
BODY = json.dumps({"posts": [{"role": "user", "message": "Say hello"}]})


@dataclass
class Rate:
    """One phase's throughput: per second, median latency (s), failures, cluster CPU s per item."""

    per_second: float
    p50: float
    failed: int
    cpu_per_item: float


async def bridge(h: ClusterHarness, headers: dict[str, str], pids: list[int]) -> Rate:
    """``REQUESTS`` bridge completions, ``CONCURRENCY`` in flight, over the gateways in turn."""
    assert h.cluster is not None
    urls = [
        f"http://{h.cluster.address(n)}{PLUGIN}/bridge/v1/completion/agent/helper"
        for n in h.cluster.config.processes_of("gateway")
    ]
    latencies: list[float] = []
    failures = 0
    queue = iter(range(REQUESTS))
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> None:
            nonlocal failures
            start = time.perf_counter()
            async with http.post(urls[i % len(urls)], data=BODY, headers=headers) as resp:
                raw = (await resp.read()).decode()
            events = [json.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: ")]
            if resp.status != 200 or "".join(e["Value"] for e in events if e["Type"] == 0) != DEFAULT_ANSWER:
                failures += 1
            latencies.append(time.perf_counter() - start)

        async def worker() -> None:
            for i in queue:
                await one(i)

        for i in range(CONCURRENCY):  # warm-up: every gateway's channels connected
            await one(i)
        latencies.clear()
        failures = 0
        cpu, started = cpu_seconds(pids), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu
    return Rate(REQUESTS / elapsed, statistics.median(latencies), failures, cpu / REQUESTS)


async def conversations(world: World, bot: FakeUser, pids: list[int]) -> Rate:
    """``CONVERSATIONS`` DMs to ``bot``'s agent, ``CONVERSATION_CONCURRENCY`` users each waiting
    for their reply to finish before posting again."""
    mm = world.mm
    dms = [
        (user, mm.add_direct_channel(user, bot))
        for user in (mm.add_user(f"bench-{k}") for k in range(CONVERSATION_CONCURRENCY))
    ]
    latencies: list[float] = []
    failures = 0
    queue = iter(range(CONVERSATIONS))

    async def one(k: int) -> None:
        nonlocal failures
        user, dm = dms[k]
        start = time.perf_counter()
        post = await mm.user_posts(user, dm, "Say hello")
        [reply] = await poll(lambda: world.replies_to(post["id"]), within=60)
        final = await world.final(reply["id"], within=60)
        if final["props"]["agents_stream_status"] != "done" or final["message"] != DEFAULT_ANSWER:
            failures += 1
        latencies.append(time.perf_counter() - start)

    async def worker(k: int) -> None:
        for _ in queue:
            await one(k)

    for k in range(CONVERSATION_CONCURRENCY):  # warm-up
        await one(k)
    latencies.clear()
    failures = 0
    cpu, started = cpu_seconds(pids), time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(CONVERSATION_CONCURRENCY)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pids) - cpu
    return Rate(CONVERSATIONS / elapsed, statistics.median(latencies), failures, cpu / CONVERSATIONS)


async def measure(postgres: SessionPostgres, replicas: int) -> tuple[Rate, Rate]:
    """Bridge completions, then DM conversations, with ``replicas`` of each service."""
    secret = secrets.token_hex(32)
    env = {
        **FAST,
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={secret}",
        "AGENTS_TELEMETRY_OUTPUT": "off",
        "AGENTS_LOG_LEVEL": "WARNING",
    }
    headers = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": secret}
    # Each gateway claims the posts it answers under its own id.
    process_env = {n: {"AGENTS_GATEWAY_REPLICA_ID": n} for n in ("gateway", "gateway-2", "gateway-3")[:replicas]}
    async with FakeOpenAI() as fake, ClusterHarness(postgres, env=env, replicas=replicas, process_env=process_env) as h:
        assert h.cluster is not None
        pids = [p.proc.pid for p in h.cluster.processes.values()]
        world = World(h, fake)
        await world.setup()
        # One agent for both (unlicensed, the cluster allows one): bridge completions and DMs.
        bot = await world.agent("helper", sockets=replicas)
        completions = await bridge(h, headers, pids)
        dms = await conversations(world, bot, pids)
    return completions, dms


async def run() -> None:
    postgres = SessionPostgres(Path(tempfile.mkdtemp(prefix="agents-bench-")) / "pg")
    await postgres.start()
    try:
        print(
            f"\nscale-out: {REQUESTS} bridge completions ({CONCURRENCY} in flight), {CONVERSATIONS} DM conversations"
            f" ({CONVERSATION_CONCURRENCY} in flight), {os.cpu_count()} CPUs; CPU = the cluster processes' own"
        )
        print(
            f"  {'replicas':>8}  {'measure':<13}  {'per second':>10}  {'p50 latency':>11}  {'CPU ms each':>11}  failed"
        )
        for replicas in REPLICAS:
            for label, rate in zip(("completions", "conversations"), await measure(postgres, replicas), strict=True):
                print(
                    f"  {replicas:>8}  {label:<13}  {rate.per_second:>10.1f}  {rate.p50 * 1000:>9.0f}ms"
                    f"  {rate.cpu_per_item * 1000:>11.1f}  {rate.failed:>6}",
                    flush=True,
                )
    finally:
        await postgres.stop()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
