"""Semantic search: recall@10 and fill rate against the exact permission-filtered ground truth,
latency against the raw pgvector query with the same filter.

A synthetic index (``BENCH_SEARCH_ROWS`` chunks, 100,000 by default, of ``BENCH_SEARCH_DIMS``
random unit vectors in ``BENCH_SEARCH_CHANNELS`` channels) in an embedded PostgreSQL, loaded with
COPY; users in 0.5 %, 5 % and 50 % of the channels. The raw query is what the plugin runs: the HNSW
index with its defaults (ef_search 40, no iterative scan) and the channel filter applied to what
the index returns. Both are timed alike: the same query vector, through the same engine, one
transaction each, in alternating order. Ground truth is the exact ranking of the user's rows.
Besides wall-clock latency, which a shared machine inflates, each query's CPU is measured: the
PostgreSQL backends' (the same for every variant's client) and, end to end, this process's.
End to end: Index.Search's whole path (the caller's channels from the fake Mattermost, asked while
the query is embedded by the fake embeddings API, both in this process, answering after
``BENCH_SEARCH_MATTERMOST_MS`` and ``BENCH_SEARCH_EMBED_MS``, 0 by default), interleaved with the
same scan of the query's vector. Reindex throughput is ``bench/reindex.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text

from bench.stats import print_rows
from services.cluster.postgres import EmbeddedPostgres
from services.common import db
from services.common.http_guard import OutboundPolicy
from services.common.mattermost import MattermostClient
from services.index.chunking import Chunker, ChunkingOptions
from services.index.embeddings import Embedder, EmbeddingSettings, create_embedder
from services.index.search.semantic import (
    MattermostMembership,
    ScanBounds,
    SearchQuery,
    SearchSetup,
    SemanticIndex,
    SetupSource,
)
from services.index.search.store import EmbeddingSpace, SearchPlan, VectorStore, vector_literal
from services.index.server import MIGRATIONS, VERSION_TABLE
from tests.fakes.embeddings import FakeEmbeddings, fake_vector
from tests.fakes.mattermost import FakeMattermost

ROWS = int(os.environ.get("BENCH_SEARCH_ROWS", "100000"))
DIMS = int(os.environ.get("BENCH_SEARCH_DIMS", "64"))
CHANNELS = int(os.environ.get("BENCH_SEARCH_CHANNELS", "200"))
QUERIES = int(os.environ.get("BENCH_SEARCH_QUERIES", "50"))
MATTERMOST_MS = float(os.environ.get("BENCH_SEARCH_MATTERMOST_MS", "0"))
EMBED_MS = float(os.environ.get("BENCH_SEARCH_EMBED_MS", "0"))
K = 10
SHARES = (0.005, 0.05, 0.5)
SPACE = EmbeddingSpace("openai-compatible", "bench", DIMS)
WORDS = "deploy release review incident budget roadmap customer latency".split()
SELECTED = "post_id, chunk_index, total_chunks, channel_id, team_id, user_id, create_at, content"
COPY_COLUMNS = "post_id, chunk_index, total_chunks, channel_id, team_id, user_id, create_at, content, embedding"


def _unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIMS)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


async def _load(store: VectorStore, rng: random.Random) -> None:
    await store.reset(SPACE, build_hnsw=False)
    async with store.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        async with raw.cursor() as cursor, cursor.copy(f"COPY index_post_chunks ({COPY_COLUMNS}) FROM STDIN") as copy:
            for start in range(0, ROWS, 5000):
                await copy.write(
                    "".join(
                        f"p{i:024d}\t0\t1\tc{i % CHANNELS:024d}\tt\tu\t{i}\t\t"
                        f"[{','.join(f'{x:.6f}' for x in _unit(rng))}]\n"
                        for i in range(start, min(start + 5000, ROWS))
                    )
                )
        await raw.commit()
    await store.build_hnsw(DIMS)
    async with store.engine.connect() as conn:
        # Autovacuum's steady state: the visibility map lets the channel count read the index only.
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE index_post_chunks"))


async def _plugin(store: VectorStore, query: list[float], channels: list[str]) -> list[str]:
    """The plugin's query: HNSW with pgvector's defaults, the filter applied to what it returns."""
    async with store.engine.begin() as conn:
        rows = await conn.execute(
            text(
                f"SELECT {SELECTED} FROM index_post_chunks WHERE channel_id = ANY(:c) "
                f"ORDER BY embedding::vector({DIMS}) <=> CAST(:q AS vector({DIMS})) LIMIT {K}"
            ),
            {"c": channels, "q": vector_literal(query)},
        )
        return [r.post_id for r in rows]


async def _same_scan(store: VectorStore, query: list[float], channels: list[str], scans: str, ef: int) -> None:
    """The scan ours ended with, as one bare pgvector statement (after its knobs for HNSW)."""
    params = {"c": channels, "q": vector_literal(query)}
    async with store.engine.begin() as conn:
        if scans == "hnsw":
            await conn.execute(
                text(
                    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                    f"set_config('hnsw.ef_search', '{ef}', true)"
                )
            )
            order = f"embedding::vector({DIMS}) <=> CAST(:q AS vector({DIMS}))"
        else:
            order = "embedding <=> CAST(:q AS vector)"
        sql = f"SELECT {SELECTED}, {order} AS d FROM index_post_chunks WHERE channel_id = ANY(:c) ORDER BY d LIMIT {K}"
        await conn.execute(text(sql), params)


async def _truth(store: VectorStore, query: list[float], channels: list[str]) -> list[str]:
    plan = SearchPlan(channels, "", K, 0, 0.0, exact_scan_rows=ROWS, max_scan_tuples=1)
    hits, _ = await store.search(query, SPACE, plan)
    return [h.post_id for h in hits]


class PostgresCpu:
    """CPU seconds the server's processes used so far (its backends run every query), from the
    scheduler's nanosecond count: the 10 ms ticks of ``cpu_times`` miss a sub-millisecond query."""

    def __init__(self, data_dir: Path) -> None:
        self._postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))

    def __call__(self) -> float:
        total = 0
        for process in self._postmaster.children():
            with contextlib.suppress(OSError):
                total += int(Path(f"/proc/{process.pid}/schedstat").read_text().split()[0])
        return total / 1e9


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _p50_p99(ms: list[float]) -> str:
    return f"{_pct(ms, 50):.1f} / {_pct(ms, 99):.1f}"


def _ratio(ours: list[float], other: list[float]) -> str:
    return f"{_pct(ours, 50) / _pct(other, 50):.2f} / {_pct(ours, 99) / _pct(other, 99):.2f}"


def _cpu_ratio(ours: list[float], other: list[float]) -> str:
    ratio = f"{sum(ours) / sum(other):.2f}" if sum(other) else "-"
    return f"{sum(ours) * 1000 / len(ours):.2f} / {sum(other) * 1000 / len(other):.2f} = {ratio}"


async def _search_table(store: VectorStore, server_cpu: PostgresCpu) -> list[tuple[str, Any]]:
    rng = random.Random(11)
    bounds = ScanBounds()
    out: list[tuple[str, Any]] = []
    for share in SHARES:
        channels = [f"c{i:024d}" for i in rng.sample(range(CHANNELS), max(1, round(CHANNELS * share)))]
        recall, fill, raw_fill = [], [], []
        ms: dict[str, list[float]] = {"ours": [], "plugin": [], "same": []}
        cpu: dict[str, list[float]] = {"ours": [], "plugin": [], "same": []}
        for n in range(QUERIES):
            query = _unit(rng)
            truth = await _truth(store, query, channels)
            plan = SearchPlan(channels, "", K, 0, 0.0, bounds.exact_scan_rows, bounds.max_scan_tuples, bounds.ef_search)
            hits, scans = await store.search(query, SPACE, plan)  # also warms the cache for all three
            runs: dict[str, Coroutine[Any, Any, Any]] = {
                "ours": store.search(query, SPACE, plan),
                "plugin": _plugin(store, query, channels),
                "same": _same_scan(store, query, channels, scans, bounds.ef_search),
            }
            # A rotating order: none of them always runs on the cache another just warmed.
            names = list(runs)
            for name in names[n % 3 :] + names[: n % 3]:
                began, cpu_began = time.perf_counter(), server_cpu()
                result = await runs[name]
                ms[name].append((time.perf_counter() - began) * 1000)
                cpu[name].append(server_cpu() - cpu_began)
                if name == "plugin":
                    raw_fill.append(len(result) == len(truth))
            found = [h.post_id for h in hits]
            recall.append(len(set(found) & set(truth)) / len(truth))
            fill.append(len(found) == len(truth))
        label = f"user in {share:.1%} of channels"

        out += [
            (f"{label}: recall@10 (goal >= 0.95)", f"{statistics.mean(recall):.3f}"),
            (f"{label}: fill rate (goal 100%)", f"{sum(fill) / len(fill):.0%}"),
            (f"{label}: fill rate of the plugin's query", f"{sum(raw_fill) / len(raw_fill):.0%}"),
            (f"{label}: p50 / p99 ms: ours", _p50_p99(ms["ours"])),
            (f"{label}: p50 / p99 ms: the same scan, one bare statement", _p50_p99(ms["same"])),
            (f"{label}: p50 / p99 ms: the plugin's query", _p50_p99(ms["plugin"])),
            (f"{label}: ours / the same scan, p50 / p99 (goal <= 1.2)", _ratio(ms["ours"], ms["same"])),
            (f"{label}: ours / the plugin's query, p50 / p99", _ratio(ms["ours"], ms["plugin"])),
            (f"{label}: PostgreSQL CPU ms per query: ours / the same scan", _cpu_ratio(cpu["ours"], cpu["same"])),
        ]
    return out


def _embedder(embed: FakeEmbeddings) -> tuple[Embedder, EmbeddingSpace]:
    """An embedder over the fake embeddings API, and the space of its vectors."""
    settings = EmbeddingSettings.from_search_config(embed.search_config(DIMS))
    loopback = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}))
    return create_embedder(settings, loopback), EmbeddingSpace(settings.kind.value, settings.model, DIMS)


def _fixed(setup: SearchSetup) -> SetupSource:
    async def configured() -> SearchSetup:
        return setup

    return configured


async def _end_to_end_table(store: VectorStore, server_cpu: PostgresCpu) -> list[tuple[str, Any]]:
    rng = random.Random(13)
    bounds = ScanBounds()
    out: list[tuple[str, Any]] = []
    async with FakeMattermost() as mm, FakeEmbeddings(latency=EMBED_MS / 1000) as embed:
        mm.latency = MATTERMOST_MS / 1000
        admin = mm.add_user("bench-search-admin", roles="system_user system_admin")
        team = mm.add_team("bench-search")
        channels = [mm.add_channel(team.id, f"bench-{i}", channel_id=f"c{i:024d}") for i in range(CHANNELS)]
        embedder, _ = _embedder(embed)
        # Labelled with the loaded rows' space: the fake's vectors have their dimensions.
        setup = SearchSetup(SPACE, embedder, Chunker(ChunkingOptions()).split)
        async with MattermostClient(mm.url, admin.token) as client:
            membership = MattermostMembership(client)
            index = SemanticIndex(store, _fixed(setup), bounds, membership)
            for share in SHARES:
                user = mm.add_user(f"bench-searcher-{share}")
                for channel in rng.sample(channels, max(1, round(CHANNELS * share))):
                    mm.add_member(channel, user)
                ms: dict[str, list[float]] = {"search": [], "same": []}
                cpu: dict[str, list[float]] = {"search": [], "same": []}
                server: dict[str, list[float]] = {"search": [], "same": []}
                for n in range(QUERIES):
                    query = " ".join(rng.choice(WORDS) for _ in range(8))
                    vector = fake_vector(query, DIMS)
                    readable = await membership(user.id)
                    plan = SearchPlan(
                        readable, "", K, 0, 0.0, bounds.exact_scan_rows, bounds.max_scan_tuples, bounds.ef_search
                    )
                    _, scans = await store.search(vector, SPACE, plan)  # warms the cache for all three

                    runs: dict[str, Coroutine[Any, Any, Any]] = {
                        "search": index.search(SearchQuery(query, user_id=user.id, limit=K)),
                        "same": _same_scan(store, vector, readable, scans, bounds.ef_search),
                    }
                    names = list(runs)
                    for name in names[n % 2 :] + names[: n % 2]:
                        began, cpu_began, server_began = time.perf_counter(), time.process_time(), server_cpu()
                        await runs[name]
                        ms[name].append((time.perf_counter() - began) * 1000)
                        cpu[name].append(time.process_time() - cpu_began)
                        server[name].append(server_cpu() - server_began)
                label = f"{share:.1%} user, end to end"
                out += [
                    (f"{label}: p50 / p99 ms: Index.Search", _p50_p99(ms["search"])),
                    (f"{label}: p50 / p99 ms: the same scan", _p50_p99(ms["same"])),
                    (f"{label}: Index.Search / the same scan, p50 / p99", _ratio(ms["search"], ms["same"])),
                    # This process runs Index.Search's path and serves it as the fake Mattermost
                    # and embeddings API.
                    (
                        f"{label}: CPU ms per query, this process: Index.Search / scan",
                        _cpu_ratio(cpu["search"], cpu["same"]),
                    ),
                    (
                        f"{label}: CPU ms per query, PostgreSQL: Index.Search / scan",
                        _cpu_ratio(server["search"], server["same"]),
                    ),
                ]
        await embedder.close()
    return out


async def _run() -> list[tuple[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        postgres = EmbeddedPostgres(Path(tmp))
        url = await postgres.start()
        engine = db.create_engine(url, statement_timeout_ms=600_000)
        try:
            await db.run_migrations(engine, MIGRATIONS, VERSION_TABLE)
            store = VectorStore(engine)
            began = time.perf_counter()
            await _load(store, random.Random(3))
            rows = [(f"load {ROWS:,} chunks of {DIMS} dims + HNSW build: s", f"{time.perf_counter() - began:.1f}")]
            server_cpu = PostgresCpu(Path(tmp))
            rows += await _search_table(store, server_cpu)
            rows += await _end_to_end_table(store, server_cpu)
            return rows
        finally:
            await engine.dispose()
            await postgres.stop()


def main() -> None:
    rows = asyncio.run(_run())
    title = f"semantic search: {ROWS:,} chunks, {CHANNELS} channels, {QUERIES} queries per user"
    print_rows(title, rows, label_width=72, value_width=28)


if __name__ == "__main__":
    main()
