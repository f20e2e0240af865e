"""Conversation trigger latency: from the fake Mattermost emitting ``posted`` for a user's DM to an
agent, to the user's client seeing the agent's reply post (its ``posted``) and its first change
(``post_edited``: the first patch, carrying the first streamed tokens), through gateway WebSocket →
claim → access check → create post → Conversations.Respond → a fake OpenAI upstream that streams
each answer at once (so the numbers are the cluster's overhead, not a model's).

Events are sent one at a time (each waits for its reply) after a warm-up; p50/p99 over
``BENCH_CONVERSATION_EVENTS`` events (default 50). Run: ``.venv/bin/python -m bench conversation_latency``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.stats import percentile
from tests.fakes.openai import FakeOpenAI
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import World

EVENTS = int(os.environ.get("BENCH_CONVERSATION_EVENTS", "50"))
WARMUP = 3


async def next_event(ws: aiohttp.ClientWebSocketResponse, kind: str, user_id: str, deadline: float) -> dict:
    """The next ``kind`` event about a post by ``user_id``."""
    while True:
        message = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        frame = json.loads(message.data)
        if frame.get("event") == kind:
            post = json.loads(frame["data"]["post"])
            if post["user_id"] == user_id:
                return post


async def run() -> None:
    work = Path(tempfile.mkdtemp(prefix="agents-bench-conv-"))
    postgres = SessionPostgres(work / "pg")
    await postgres.start()
    env = {"AGENTS_LOG_LEVEL": "WARNING", "AGENTS_GATEWAY_AGENTS_REFRESH_SECONDS": "0.2"}
    try:
        async with (
            FakeOpenAI() as openai,
            ClusterHarness(postgres, env=env) as h,
            aiohttp.ClientSession() as session,
        ):
            world = World(h, openai)
            await world.setup()
            bot = await world.agent("latency-bot")
            mm = h.mattermost
            user = mm.add_user("latency-user")
            dm = mm.add_direct_channel(user, bot)
            headers = {"Authorization": f"Bearer {user.token}"}
            async with session.ws_connect(mm.url + "/api/v4/websocket", headers=headers) as ws:
                await ws.receive(timeout=5)  # hello
                created: list[float] = []
                patched: list[float] = []
                for i in range(WARMUP + EVENTS):
                    started = time.perf_counter()
                    await mm.user_posts(user, dm, f"question {i}")
                    deadline = time.monotonic() + 30
                    await next_event(ws, "posted", bot.id, deadline)
                    t_created = time.perf_counter() - started
                    await next_event(ws, "post_edited", bot.id, deadline)
                    t_patched = time.perf_counter() - started
                    if i >= WARMUP:
                        created.append(t_created * 1000)
                        patched.append(t_patched * 1000)
        print(f"conversation_latency: {EVENTS} DM events, sequential, after {WARMUP} warm-up events")
        print(f"{'step':<40}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        for name, samples in (("posted -> reply post created", created), ("posted -> first patch", patched)):
            print(f"{name:<40}{percentile(samples, 50):>10.1f}{percentile(samples, 99):>10.1f}{max(samples):>10.1f}")
    finally:
        await postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    asyncio.run(run())
