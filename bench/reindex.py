"""Reindex: throughput through the whole job, the CPU it costs each process, and a token budget
kept under latency and 429s (``python -m bench reindex``).

``BENCH_REINDEX_POSTS`` posts (12 words each, in ``BENCH_REINDEX_CHANNELS`` channels) are read
from the fake Mattermost and embedded (``BENCH_REINDEX_DIMS`` dimensions) by the fake embeddings
API through the whole job in this process: keyset pages, chunking, embedding, commits with the
cursor, the HNSW build at the end, in an embedded PostgreSQL (that build is then timed alone).
Each fake serves from a process of its own, so this process's CPU seconds are the job's alone; the
fakes' and PostgreSQL's (its backends and workers included) are read by psutil and shown beside
them. Posts/s is a wall-clock rate (the job's own start and end) on whatever share of the CPUs
this machine gives; CPU seconds per 1,000 posts are the steadier measure on a shared machine.

Budget: the same job with the embeddings API answering after ``BENCH_REINDEX_LATENCY_MS`` and
refusing every ``BENCH_REINDEX_429_EVERY``th request with 429 and a ``Retry-After`` of
``BENCH_REINDEX_RETRY_AFTER_MS``, the embedder held to ``BENCH_REINDEX_TOKENS_PER_MINUTE`` in
requests of at most ``BENCH_REINDEX_MAX_INPUTS`` inputs; the rate is every token sent (refused
requests' too, as a provider's limiter counts them) over the span from the first request to the
last, against the budget (goal: within 5 %).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stats import print_rows
from services.cluster.postgres import EmbeddedPostgres
from services.common import db
from services.common.http_guard import OutboundPolicy
from services.common.mattermost import MattermostClient
from services.index.chunking import Chunker, ChunkingOptions, encoding
from services.index.embeddings import EmbeddingSettings, create_embedder
from services.index.reindex.runner import Reindexer, ReindexSettings
from services.index.reindex.store import JobStore
from services.index.search.semantic import MattermostMembership, ScanBounds, SearchSetup, SemanticIndex
from services.index.search.store import EmbeddingSpace, VectorStore
from services.index.server import MIGRATIONS, VERSION_TABLE
from tests.fakes.embeddings import FakeEmbeddings
from tests.fakes.mattermost import FakeMattermost
from tests.polling import poll

POSTS = int(os.environ.get("BENCH_REINDEX_POSTS", "20000"))
CHANNELS = int(os.environ.get("BENCH_REINDEX_CHANNELS", "20"))
DIMS = int(os.environ.get("BENCH_REINDEX_DIMS", "64"))
# Well below the rate the job reaches on a shared machine, so that the budget is what limits it.
BUDGET = int(os.environ.get("BENCH_REINDEX_TOKENS_PER_MINUTE", "120000"))
BUDGET_SECONDS = float(os.environ.get("BENCH_REINDEX_BUDGET_SECONDS", "15"))
LATENCY_MS = float(os.environ.get("BENCH_REINDEX_LATENCY_MS", "50"))
EVERY_429 = int(os.environ.get("BENCH_REINDEX_429_EVERY", "10"))
RETRY_AFTER_MS = float(os.environ.get("BENCH_REINDEX_RETRY_AFTER_MS", "500"))
MAX_INPUTS = int(os.environ.get("BENCH_REINDEX_MAX_INPUTS", "32"))
WORDS = "deploy release review incident budget roadmap customer latency".split()
# Tokens of a 12-word post of WORDS (cl100k_base: one token a word, the first without a space).
POST_TOKENS = 12
LOOPBACK = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}))


# ---- the fakes, each in a process of its own ---------------------------------------------------


async def _mattermost(conn: Connection, posts: int) -> None:
    async with FakeMattermost() as mm:
        admin = mm.add_user("bench-admin", roles="system_user system_admin")
        author = mm.add_user("bench-author")
        team = mm.add_team("bench")
        channels = [mm.add_channel(team.id, f"bench-{i}") for i in range(CHANNELS)]
        rng = random.Random(5)
        for i in range(posts):
            mm.add_post(author, channels[i % len(channels)], " ".join(rng.choice(WORDS) for _ in range(12)))
        conn.send((mm.url, admin.token))
        await asyncio.to_thread(conn.recv)  # until the bench is done with it
        conn.send(None)


async def _embeddings(conn: Connection, latency: float, every_429: int, retry_after: float) -> None:
    async with FakeEmbeddings(latency=latency, rate_limit_every=every_429, retry_after=retry_after) as fake:
        conn.send(fake.base_url)
        await asyncio.to_thread(conn.recv)
        conn.send([(c.tokens, c.at, c.status) for c in fake.calls])


def _serve(conn: Connection, fake: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
    asyncio.run(fake(conn, *args))


@dataclass
class _Fake:
    """A fake serving from a child process: its first message (where it listens) and its CPU."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    hello: Any

    @classmethod
    def start(cls, fake: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> _Fake:
        ours, theirs = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(target=_serve, args=(theirs, fake, *args), daemon=True)
        process.start()
        return cls(process, ours, ours.recv())

    def cpu(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> Any:
        """Its last message."""
        self.conn.send("stop")
        last = self.conn.recv()
        self.process.join(30)
        return last


def _postgres_cpu(pid: int) -> float:
    """CPU seconds of the postmaster, its live children and those it reaped (backends, workers)."""
    main = psutil.Process(pid)
    times = main.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in main.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return float(total)


# ---- the job -----------------------------------------------------------------------------------


@dataclass
class _Run:
    posts: int
    seconds: float
    cpu: dict[str, float]
    calls: list[tuple[int, float, int]]


async def _reindex(engine: AsyncEngine, postgres_pid: int, posts: int, **embedding: Any) -> _Run:
    """One job over ``posts`` posts; the posts read, the seconds it took, each process's CPU
    seconds and the embeddings API's calls (tokens, arrival, status)."""
    mattermost = _Fake.start(_mattermost, posts)
    embeddings = _Fake.start(
        _embeddings, embedding.pop("latency", 0.0), embedding.pop("every_429", 0), embedding.pop("retry_after", 0.0)
    )
    try:
        url, token = mattermost.hello
        parameters = {
            "apiURL": embeddings.hello,
            "apiKey": FakeEmbeddings.api_key,
            "embeddingModel": "text-embedding-3-small",
            **embedding,
        }
        config = {"embeddingProvider": {"type": "openai-compatible", "parameters": parameters}, "dimensions": DIMS}
        settings = EmbeddingSettings.from_search_config(config)
        embedder = create_embedder(settings, LOOPBACK)
        space = EmbeddingSpace(settings.kind.value, settings.model, DIMS)
        setup = SearchSetup(space, embedder, Chunker(ChunkingOptions()).split)

        async def configured() -> SearchSetup:
            return setup

        async with MattermostClient(url, token) as client:
            index = SemanticIndex(VectorStore(engine), configured, ScanBounds(), MattermostMembership(client))
            reindexer = Reindexer(JobStore(engine), index, client, ReindexSettings(node_id="bench"))
            # The token encoding loads once per process (about 0.4 s of CPU), before any job in
            # a running index: not counted.
            await asyncio.to_thread(encoding)
            fakes = (mattermost.cpu(), embeddings.cpu(), _postgres_cpu(postgres_pid))
            cpu = time.process_time()
            job = await reindexer.start(clear=True)

            async def ended() -> bool:
                return (await reindexer.jobs.job(job.id)).status != "running"

            # Seldom: the reads are this process's CPU too. The job's own clock times it.
            await poll(ended, within=3600, interval=0.5)
            cpu = time.process_time() - cpu
            used = {
                "index (this process: the job)": cpu,
                "fake Mattermost": mattermost.cpu() - fakes[0],
                "fake embeddings API": embeddings.cpu() - fakes[1],
                "PostgreSQL": _postgres_cpu(postgres_pid) - fakes[2],
            }
            done = await reindexer.jobs.job(job.id)
            await reindexer.close()
        await embedder.close()
    finally:
        mattermost.stop()
        calls = embeddings.stop()
    assert done.status == "completed", done
    return _Run(done.processed_rows, (done.completed_at - done.started_at) / 1000, used, calls)


async def _hnsw_build_cpu(engine: AsyncEngine, postgres_pid: int) -> float:
    """PostgreSQL's CPU seconds for the HNSW build that ended the job, built again."""
    store = VectorStore(engine)
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP INDEX idx_index_post_chunks_hnsw_{DIMS}"))
    before = _postgres_cpu(postgres_pid)
    await store.build_hnsw(DIMS)
    return _postgres_cpu(postgres_pid) - before


def _met(goal: bool) -> str:
    return "met" if goal else "not met"


def _budget_rate(calls: list[tuple[int, float, int]]) -> float:
    """Tokens per minute sent, refused requests' included (the last one's tokens end the span)."""
    calls = sorted(calls, key=lambda c: c[1])
    return sum(tokens for tokens, _, _ in calls[:-1]) / (calls[-1][1] - calls[0][1]) * 60


async def _run() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        postgres = EmbeddedPostgres(Path(tmp))
        url = await postgres.start()
        pid = int((Path(tmp) / "postmaster.pid").read_text().split()[0])
        engine = db.create_engine(url, statement_timeout_ms=600_000)
        try:
            await db.run_migrations(engine, MIGRATIONS, VERSION_TABLE)
            fast = await _reindex(engine, pid, POSTS)
            hnsw = await _hnsw_build_cpu(engine, pid)
            budget_posts = int(BUDGET / 60 * BUDGET_SECONDS / POST_TOKENS)
            paced = await _reindex(
                engine,
                pid,
                budget_posts,
                latency=LATENCY_MS / 1000,
                every_429=EVERY_429,
                retry_after=RETRY_AFTER_MS / 1000,
                tokensPerMinute=BUDGET,
                maxInputsPerRequest=MAX_INPUTS,
                maxConcurrency=16,
            )
        finally:
            await engine.dispose()
            await postgres.stop()
    rows = [
        (f"zero-latency fakes: posts/s ({fast.posts:,} posts, {DIMS} dims)", f"{fast.posts / fast.seconds:,.0f}"),
        *(
            (f"zero-latency fakes: CPU s per 1,000 posts: {name}", f"{seconds * 1000 / fast.posts:.3f}")
            for name, seconds in fast.cpu.items()
        ),
        (
            "zero-latency fakes: CPU s per 1,000 posts: PostgreSQL's HNSW build of them",
            f"{hnsw * 1000 / fast.posts:.3f}",
        ),
    ]
    sent = _budget_rate(paced.calls)
    refused = sum(1 for _, _, status in paced.calls if status == 429)
    return [
        *rows,
        (f"budget: tokens/min allowed ({paced.posts:,} posts)", f"{BUDGET:,}"),
        (
            f"budget: tokens/min sent ({LATENCY_MS:g} ms latency, 429 + Retry-After {RETRY_AFTER_MS:g} ms "
            f"every {EVERY_429}, {MAX_INPUTS} inputs a request)",
            f"{sent:,.0f}",
        ),
        ("budget: sent / allowed (goal: within 5 %)", f"{sent / BUDGET:.1%} ({_met(abs(sent / BUDGET - 1) <= 0.05)})"),
        ("budget: requests / refused with 429", f"{len(paced.calls)} / {refused}"),
        ("budget: posts/s", f"{paced.posts / paced.seconds:,.0f}"),
    ]


def main() -> None:
    rows = asyncio.run(_run())
    title = f"reindex: {CHANNELS} channels, whole job, fakes in processes of their own"
    print_rows(title, rows, label_width=72, value_width=16)


if __name__ == "__main__":
    main()
