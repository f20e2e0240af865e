"""The search's database round trips, counted on a real PostgreSQL+pgvector: the exact ranking of
a few permitted rows is one statement, the HNSW scan two (count and knobs, then the scan), so a
search costs about what the bare pgvector query costs (bench/semantic_search.py times both)."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import event

from services.common import db
from services.index.search.store import Chunk, EmbeddingSpace, SearchPlan, VectorStore
from services.index.server import MIGRATIONS, VERSION_TABLE
from tests.harness import SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIMS = 8
SPACE = EmbeddingSpace("openai-compatible", "store-test", DIMS)
EXACT_ROWS = 20


def unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(DIMS)]
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def store(postgres: SessionPostgres) -> AsyncIterator[VectorStore]:
    engine = db.create_engine(await postgres.create_database("store"))
    await db.run_migrations(engine, MIGRATIONS, VERSION_TABLE)
    store = VectorStore(engine)
    await store.reset(SPACE)
    rng = random.Random(7)
    # Channel "few" holds 5 rows (exact ranking), "many" 200 (HNSW).
    chunks = [
        Chunk(f"p{i:025d}", 0, 1, "few" if i < 5 else "many", "t", "u", i, f"row {i}", unit(rng)) for i in range(205)
    ]
    await store.replace_posts([], chunks, SPACE)
    yield store
    await engine.dispose()


async def statements_of(store: VectorStore, plan: SearchPlan) -> tuple[list[str], str, int]:
    """The SQL statements one search sent, its scans and how many hits it found."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        hits, scans = await store.search(unit(random.Random(3)), SPACE, plan)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    return sent, scans, len(hits)


def plan(channel: str, limit: int = 10) -> SearchPlan:
    return SearchPlan([channel], "", limit, 0, 0.0, exact_scan_rows=EXACT_ROWS, max_scan_tuples=10_000, ef_search=40)


async def test_a_few_permitted_rows_are_ranked_in_one_statement(store: VectorStore) -> None:
    sent, scans, found = await statements_of(store, plan("few"))
    assert scans == "exact" and found == 5
    assert len(sent) == 1, sent


async def test_many_permitted_rows_take_the_hnsw_scan_in_two_statements(store: VectorStore) -> None:
    sent, scans, found = await statements_of(store, plan("many"))
    assert scans == "hnsw" and found == 10
    assert len(sent) == 2, sent
