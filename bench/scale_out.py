"""Scale-out benchmark: bridge completions per second (gateway → llm → fake OpenAI, SSE back)
with 1 and with 3 replicas of every service on this machine, the requests spread over the
gateways in turn, a fixed number in flight. On a machine with few cores the replicas share them:
the figure says what replicas cost or gain there, not what more machines would."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import DEFAULT_ANSWER
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.registry_support import bridge_agent

REQUESTS = int(os.environ.get("BENCH_SCALE_REQUESTS", "300"))
CONCURRENCY = int(os.environ.get("BENCH_SCALE_CONCURRENCY", "24"))
REPLICAS = [int(n) for n in os.environ.get("BENCH_SCALE_REPLICAS", "1,3").split(",")]
PLUGIN_ID = "com.example.bench"
BODY = json.dumps({"posts": [{"role": "user", "message": "Say hello"}]})


async def measure(postgres: SessionPostgres, replicas: int) -> tuple[float, float, int]:
    """Completions per second, median latency (s) and failures for ``replicas`` of each service."""
    secret = secrets.token_hex(32)
    env = {"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={secret}", "AGENTS_TELEMETRY_OUTPUT": "off"}
    headers = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": secret}
    async with FakeOpenAI() as fake, ClusterHarness(postgres, env=env, replicas=replicas) as h:
        assert h.cluster is not None
        await bridge_agent(h, fake)
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
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            elapsed = time.perf_counter() - started
    return REQUESTS / elapsed, statistics.median(latencies), failures


async def run() -> None:
    postgres = SessionPostgres(Path(tempfile.mkdtemp(prefix="agents-bench-")) / "pg")
    await postgres.start()
    try:
        print(f"\nscale-out: {REQUESTS} bridge completions, {CONCURRENCY} in flight, {os.cpu_count()} CPUs")
        print(f"  {'replicas':>8}  {'completions/s':>13}  {'p50 latency':>11}  {'failed':>6}")
        for replicas in REPLICAS:
            rate, p50, failed = await measure(postgres, replicas)
            print(f"  {replicas:>8}  {rate:>13.1f}  {p50 * 1000:>9.0f}ms  {failed:>6}", flush=True)
    finally:
        await postgres.stop()


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
