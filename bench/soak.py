"""Memory soak: mixed streams for ``BENCH_SOAK_SECONDS`` (default 600; the goal is an hour) while
every service's RSS is sampled, then the RSS slope after warm-up per service (least squares, MB/h).

The mix, all at once against one cluster and the fake upstream of ``llm_stream`` (50 tokens, 20 ms
TTFT, 5 ms/token): ``BENCH_SOAK_CONCURRENCY`` (default 8) closed loops each of llm gRPC streams,
of bridge SSE streams, and of DM conversations (each its own user posting to agent ``benchbot``
and waiting on its WebSocket for the reply to be final). RSS is sampled every
``BENCH_SOAK_SAMPLE_SECONDS`` (5); the first ``BENCH_SOAK_WARMUP_SECONDS`` (a fifth of the run)
are left out of the slope (pools, caches and the allocator's arenas fill first).
Run: ``BENCH_SOAK_SECONDS=3600 .venv/bin/python -m bench soak`` (not part of ``make bench``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import psutil

from bench.llm_stream import cluster_targets, start_fake
from bench.stats import slope
from services.cluster.supervisor import free_port
from tests.fakes.mattermost.state import FakeUser
from tests.harness import ClusterHarness
from tests.polling import poll

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "600"))
WARMUP_SECONDS = float(os.environ.get("BENCH_SOAK_WARMUP_SECONDS", str(SECONDS / 5)))
SAMPLE_SECONDS = float(os.environ.get("BENCH_SOAK_SAMPLE_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_SOAK_CONCURRENCY", "8"))
FINAL = ("done", "stopped", "interrupted", "awaiting_approval")
MB = 1024 * 1024


async def conversation_loop(h: ClusterHarness, bot: FakeUser, index: int, stop_at: float, done: Counter[str]) -> None:
    """One user's DMs to the bot, one at a time: each waits for the reply's final ``post_edited``."""
    mm = h.mattermost
    user = mm.add_user(f"soak-user-{index}")
    dm = mm.add_direct_channel(user, bot)
    headers = {"Authorization": f"Bearer {user.token}"}
    async with aiohttp.ClientSession() as http, http.ws_connect(mm.url + "/api/v4/websocket", headers=headers) as ws:
        await ws.receive(timeout=10)  # hello
        while time.monotonic() < stop_at:
            await mm.user_posts(user, dm, "tell me something")
            try:
                await _until_final(ws, bot.id)
                done["conversation"] += 1
            except TimeoutError:
                done["conversation errors"] += 1


async def _until_final(ws: aiohttp.ClientWebSocketResponse, bot_id: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if message.type != aiohttp.WSMsgType.TEXT:
            raise TimeoutError(f"the WebSocket ended: {message.type}")
        frame = json.loads(message.data)
        if frame.get("event") == "post_edited":
            post = json.loads(frame["data"]["post"])
            if post["user_id"] == bot_id and post["props"].get("agents_stream_status") in FINAL:
                return


async def stream_loop(
    name: str, fn: Callable[[], Awaitable[object]], stop_at: float, done: Counter[str], errors: dict[str, str]
) -> None:
    while time.monotonic() < stop_at:
        try:
            await fn()
            done[name] += 1
        except Exception as exc:
            done[f"{name} errors"] += 1
            errors.setdefault(name, f"{type(exc).__name__}: {exc}"[:200])


async def sample_rss(pids: dict[str, int], stop_at: float, samples: dict[str, list[tuple[float, float]]]) -> None:
    """Every service's RSS (MB) every SAMPLE_SECONDS, with the seconds since the start."""
    started = time.monotonic()
    while True:
        now = time.monotonic()
        for name, pid in pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                samples[name].append((now - started, psutil.Process(pid).memory_info().rss / MB))
        if now >= stop_at:
            return
        await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, stop_at - now)))


def report(samples: dict[str, list[tuple[float, float]]], done: Counter[str], errors: dict[str, str]) -> None:
    print(
        f"soak: {SECONDS:g} s of mixed streams ({CONCURRENCY} each of llm gRPC, bridge SSE, DM conversations),"
        f" RSS every {SAMPLE_SECONDS:g} s, slope after the first {WARMUP_SECONDS:g} s"
    )
    print("completed: " + ", ".join(f"{k} {v}" for k, v in sorted(done.items())))
    for name, first in errors.items():
        print(f"  first {name} error: {first}")
    print(f"{'service':<10}{'RSS start MB':>14}{'after warm-up':>15}{'end MB':>10}{'slope MB/h':>12}")
    for name, series in samples.items():
        steady = [(t, rss) for t, rss in series if t >= WARMUP_SECONDS]
        rate = slope([t for t, _ in steady], [rss for _, rss in steady]) * 3600
        after = steady[0][1] if steady else float("nan")
        print(f"{name:<10}{series[0][1]:>14.1f}{after:>15.1f}{series[-1][1]:>10.1f}{rate:>12.2f}")


async def run() -> None:
    port = free_port()
    fake = await start_fake(port)
    work = Path(tempfile.mkdtemp(prefix="agents-bench-soak-"))
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    done: Counter[str] = Counter()
    errors: dict[str, str] = {}
    try:
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
            cluster_targets(
                f"http://127.0.0.1:{port}/v1", http, work, {"AGENTS_GATEWAY_AGENTS_REFRESH_SECONDS": "0.5"}
            ) as (h, targets),
        ):
            assert h.cluster is not None
            mm = h.mattermost
            [bot_id] = [u["id"] for u in mm.state.users.values() if u["username"] == "benchbot"]
            bot = FakeUser(bot_id, "benchbot", "")
            await poll(lambda: any(c.user_id == bot.id for c in mm.hub.connections), within=30)
            pids = {name: service.proc.pid for name, service in h.cluster.processes.items()}
            loops = [t for t in targets if t.name in ("llm gRPC (chat)", "gateway SSE → llm")]
            stop_at = time.monotonic() + SECONDS
            await asyncio.gather(
                sample_rss(pids, stop_at, samples),
                *(stream_loop(t.name, t.fn, stop_at, done, errors) for t in loops for _ in range(CONCURRENCY)),
                *(conversation_loop(h, bot, i, stop_at, done) for i in range(CONCURRENCY)),
            )
    finally:
        fake.terminate()
        await fake.wait()
        shutil.rmtree(work, ignore_errors=True)
    report(samples, done, errors)


def main() -> None:
    asyncio.run(run())
