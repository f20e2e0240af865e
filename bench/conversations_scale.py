"""Conversations at scale: ONE gateway process holding ``BENCH_CONV_ANSWERS`` (default 1,000) DM
answers streaming at the same time.

Each answer is its own user's DM to one agent bot, posted through the fake Mattermost (the gateway
hears it on the bot's WebSocket, claims it, creates the reply post and streams the turn from the
llm into it). Events arrive evenly over ``BENCH_CONV_RAMP_SECONDS`` (100: starting an answer costs
every service some work, and all but the gateway share one core) and the fake provider (its own
process) streams each answer slowly (``BENCH_CONV_TOKENS`` x ``BENCH_CONV_TOKEN_MS``: 120 x 1 s
after a 20 ms TTFT), so every answer is still live when the last one starts. The gateway has CPU 1
to itself; everything else (this process with the fake Mattermost, the fake provider, the llm and
the other services, PostgreSQL) shares CPU 0.

Reported: the peak number of answers streaming at once; Mattermost ``posted`` -> reply post
created and -> first patch (p50/p99/max, including the fake's TTFT); the patch interval as
configured (``BENCH_CONV_PATCH_SECONDS``, 2 s: 1,000 answers at the default 0.3 s would be 3,300
writes/s, more than the fake Mattermost sharing a core can serve) against the gaps the fake saw
between two patches of one post (as the fake answered them: a starved fake answers queued patches
together, so single gaps below the interval say nothing); the gateway's CPU per answer; and the
services' most frequent warnings (what broke, if anything); and, for the three answers slowest to
their first patch, every Mattermost request each made with its time after the post (which stage
waited).
Run: ``.venv/bin/python -m bench conversations_scale``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from bench.cpu_pinning import AUXILIARY_CPUS, SUT_CPUS, pin_process, pin_self, postmaster_pid
from bench.llm_stream import ADMIN, start_fake
from bench.stats import percentile
from services.cluster.supervisor import free_port
from tests.fakes.mattermost.server import FakeMattermost
from tests.fakes.mattermost.state import FakeUser
from tests.harness import ClusterHarness, SessionPostgres
from tests.polling import poll

ANSWERS = int(os.environ.get("BENCH_CONV_ANSWERS", "1000"))
RAMP_SECONDS = float(os.environ.get("BENCH_CONV_RAMP_SECONDS", "100"))
PATCH_SECONDS = float(os.environ.get("BENCH_CONV_PATCH_SECONDS", "2.0"))
TOKENS = int(os.environ.get("BENCH_CONV_TOKENS", "120"))
TOKEN_MS = float(os.environ.get("BENCH_CONV_TOKEN_MS", "1000"))
TTFT_MS = 20.0


async def _agent(h: ClusterHarness, fake_url: str) -> FakeUser:
    """The agent answering every DM, once the gateway listens on its bot's WebSocket."""
    async with h.channel("index") as channel:
        registry = registry_pb2_grpc.RegistryStub(channel)
        service = await registry.CreateService(
            registry_pb2.CreateServiceRequest(
                service=registry_pb2.ServiceConfig(
                    name="scale", type="openaicompatible", api_key="sk-bench", api_url=fake_url, default_model="gpt-4o"
                )
            ),
            metadata=h.metadata(ADMIN),
            timeout=10,
        )
        reply = await registry.CreateAgent(
            registry_pb2.CreateAgentRequest(
                agent=registry_pb2.Agent(username="scalebot", display_name="Scale", service_id=service.service.id)
            ),
            metadata=h.metadata(ADMIN),
            timeout=10,
        )
    await h.mattermost.wait_for_websockets(1, within=30, user_id=reply.agent.bot_user_id)
    bot = h.mattermost.state.users[reply.agent.bot_user_id]
    return FakeUser(bot["id"], bot["username"], "")


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    return peak


async def drive(h: ClusterHarness, bot: FakeUser) -> tuple[dict[str, float], dict[str, float]]:
    """Post every user's DM on schedule; the event times by post id, and each service's CPU
    seconds (and this process's: the fake Mattermost) from the first event until every reply is
    final."""
    mm = h.mattermost
    pairs = []
    for i in range(ANSWERS):
        user = mm.add_user(f"scale-user-{i}")
        pairs.append((user, mm.add_direct_channel(user, bot)))
    assert h.cluster is not None
    processes = {name: psutil.Process(service.proc.pid) for name, service in h.cluster.processes.items()}
    processes["fake Mattermost"] = psutil.Process()
    cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, (user, dm) in enumerate(pairs):
        # Open loop: each event at its time, whatever the cluster's state.
        await asyncio.sleep(max(0.0, start + i * RAMP_SECONDS / ANSWERS - time.monotonic()))
        at = time.monotonic()
        post = await mm.user_posts(user, dm, f"question {i}")
        sent[post["id"]] = at

    def finished() -> bool:
        replies = [p for p in mm.state.posts.values() if p["props"].get("responding_to") in sent]
        return len(replies) == ANSWERS and all(
            p["props"].get("agents_stream_status") not in (None, "streaming") for p in replies
        )

    answer_seconds = TOKENS * TOKEN_MS / 1000
    try:
        await poll(finished, within=answer_seconds + 120, interval=0.5)
    except AssertionError:
        print("  not every answer finished in time: the figures cover those that did", flush=True)
    return sent, {name: sum(p.cpu_times()[:2]) - cpu_before[name] for name, p in processes.items()}


class LogTally:
    """Counts the services' warnings and errors by service and message: what broke, if anything."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, service: str, line: str) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            record = json.loads(line)
            if record.get("level") in ("warning", "error", "critical"):
                self.counts[(service, f"{record['level']}: {record.get('msg', '')}"[:100])] += 1

    def print(self) -> None:
        for (service, message), count in self.counts.most_common(8):
            print(f"  {count:>6} x {service}: {message}")


def report(h: ClusterHarness, sent: dict[str, float], cpu: dict[str, float]) -> None:
    mm = h.mattermost
    reply_of = {
        p["props"]["responding_to"]: p for p in mm.state.posts.values() if p["props"].get("responding_to") in sent
    }
    patches: dict[str, list[float]] = defaultdict(list)
    failed_patches = 0
    created: dict[str, float] = {}
    for r in mm.requests:
        if r.method == "PUT" and r.path.endswith("/patch"):
            if r.status == 200:
                patches[r.path.split("/")[4]].append(r.at)
            else:
                failed_patches += 1
        elif r.method == "POST" and r.path == "/api/v4/posts" and r.status == 201:
            created[r.response_json["id"]] = r.at
    to_created, to_first_patch, gaps, intervals = [], [], [], []
    waited: dict[str, float] = {}  # post id -> seconds to its first patch (none: not in it)
    statuses: dict[str, int] = defaultdict(int)
    for post_id, at in sent.items():
        reply = reply_of.get(post_id)
        times = patches[reply["id"]] if reply else []
        statuses[reply["props"].get("agents_stream_status", "") if reply else "no reply"] += 1
        if not times:
            continue
        to_created.append((created[reply["id"]] - at) * 1000)
        waited[post_id] = times[0] - at
        to_first_patch.append(waited[post_id] * 1000)
        # Every patch but the final one (written at once when the turn ends) follows the interval.
        streaming = times[:-1]
        gaps += [b - a for a, b in itertools.pairwise(streaming)]
        intervals.append((created[reply["id"]], times[-1]))
    print(
        f"conversations_scale: {ANSWERS} DM answers to one gateway, events over {RAMP_SECONDS:g} s, each answer"
        f" {TOKENS} tokens x {TOKEN_MS:g} ms; patch interval {PATCH_SECONDS:g} s"
    )
    print(f"{'measure':<48}{'p50':>10}{'p99':>10}{'max':>10}")
    for name, samples in (
        ("posted -> reply post created (ms)", to_created),
        ("posted -> first patch (ms)", to_first_patch),
        ("gap between two patches of a post (s)", gaps),
    ):
        if not samples:  # answers shorter than the patch interval have no gaps
            print(f"{name:<48}{'-':>10}{'-':>10}{'-':>10}")
            continue
        print(f"{name:<48}{percentile(samples, 50):>10.2f}{percentile(samples, 99):>10.2f}{max(samples):>10.2f}")
    if gaps:
        print(f"{'gap between two patches of a post, p1 / min (s)':<48}{percentile(gaps, 1):>10.3f}{min(gaps):>10.3f}")
        print(
            f"{'patches per post per second (median, allowed)':<48}{1 / statistics.median(gaps):>10.2f}"
            f"{1 / PATCH_SECONDS:>10.2f}"
        )
    print(f"{'answers streaming at once (peak)':<48}{peak_overlap(intervals):>10}")
    print(f"{'gateway CPU per answer (ms)':<48}{cpu['gateway'] / ANSWERS * 1000:>10.2f}")
    others = ", ".join(f"{name} {seconds / ANSWERS * 1000:.1f}" for name, seconds in cpu.items() if name != "gateway")
    print(f"  the others' CPU per answer (ms; CPU 0): {others}")
    print(f"{'failed patches':<48}{failed_patches:>10}")
    print("final statuses: " + ", ".join(f"{k or '?'} {v}" for k, v in sorted(statuses.items())))
    # Answers never patched rank slowest.
    slowest = sorted(sent, key=lambda pid: waited.get(pid, float("inf")), reverse=True)[:3]
    for post_id in slowest:
        print_trail(mm, post_id, reply_of.get(post_id), sent[post_id])


def print_trail(mm: FakeMattermost, post_id: str, reply: dict[str, Any] | None, at: float) -> None:
    """The Mattermost requests one answer made up to its first patch, in ms after its post: where a
    slow answer waited."""
    post = mm.state.posts[post_id]
    keys = {post_id, post["channel_id"], post["user_id"]} | ({reply["id"]} if reply else set())
    print(f"  the Mattermost requests of post {post_id} (ms after it was posted):")
    for r in mm.requests:
        if r.at >= at and (any(k in r.path for k in keys) or any(k in json.dumps(r.json) for k in keys)):
            print(f"    {(r.at - at) * 1000:9.1f}  {r.method} {r.route} {r.status}")
            if r.method == "PUT" and r.path.endswith("/patch"):
                return


async def run() -> None:
    pin_self(AUXILIARY_CPUS)  # children inherit it
    port = free_port()
    fake = await start_fake(port, ttft_ms=TTFT_MS, token_delay_ms=TOKEN_MS, tokens=TOKENS)
    work = Path(tempfile.mkdtemp(prefix="agents-bench-conv-scale-"))
    postgres = SessionPostgres(work / "pg")
    env = {
        "AGENTS_TELEMETRY_OUTPUT": "off",
        "AGENTS_LOG_LEVEL": "WARNING",
        "AGENTS_GATEWAY_AGENTS_REFRESH_SECONDS": "0.2",
        "AGENTS_GATEWAY_PATCH_INTERVAL_SECONDS": str(PATCH_SECONDS),
    }
    try:
        await postgres.start()
        if (pg := postmaster_pid(work / "pg")) is not None:
            pin_process(pg, AUXILIARY_CPUS)
        logs = LogTally()
        async with ClusterHarness(postgres, env=env, log_sink=logs) as h:
            assert h.cluster is not None
            for name, service in h.cluster.processes.items():
                pin_process(service.proc.pid, SUT_CPUS if name == "gateway" else AUXILIARY_CPUS)
            bot = await _agent(h, f"http://127.0.0.1:{port}/v1")
            sent, cpu = await drive(h, bot)
            report(h, sent, cpu)
        print("the services' warnings and errors, most frequent first:")
        logs.print()
    finally:
        await postgres.stop()
        fake.terminate()
        await fake.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    asyncio.run(run())
