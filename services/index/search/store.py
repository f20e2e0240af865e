"""Reads and writes of ``index_post_chunks`` and ``index_embedding_space`` (pgvector).

Distances are cosine distances; a score is ``1 - distance``, clamped to [0, 1]. Two query plans
answer a search, both over the rows of the permitted channels only:

* exact: a sequential ranking of every permitted row (through the channel index). Used when the
  permitted channels hold few rows, where it is both exact and cheap.
* HNSW with an iterative scan in strict order (pgvector ≥ 0.8): the index walk continues past
  ``ef_search`` until the filter has let through enough rows or ``max_scan_tuples`` were read.
  When it stops short of the asked rows, the exact plan answers instead, so a search never returns
  fewer results than there are permitted matches.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from pgvector import Vector
from pgvector.psycopg.vector import register_vector_info
from psycopg.types import TypeInfo
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import FailedPrecondition

_COLUMNS = "post_id, chunk_index, total_chunks, channel_id, team_id, user_id, create_at, content"
_COPY = f"COPY index_post_chunks ({_COLUMNS}, embedding) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["varchar", "int4", "int4", "varchar", "varchar", "varchar", "int8", "text", "vector"]


@dataclass(frozen=True)
class EmbeddingSpace:
    """What produced a set of vectors: vectors of two spaces are never compared."""

    provider: str
    model: str
    dimensions: int


@dataclass(frozen=True)
class Chunk:
    """One stored piece of a post and its vector."""

    post_id: str
    chunk_index: int
    total_chunks: int
    channel_id: str
    team_id: str
    user_id: str
    create_at: int
    content: str
    embedding: Sequence[float]


@dataclass(frozen=True)
class Hit:
    """A chunk that matched a search, with its similarity score."""

    post_id: str
    chunk_index: int
    total_chunks: int
    channel_id: str
    team_id: str
    user_id: str
    create_at: int
    content: str
    score: float


@dataclass(frozen=True)
class SearchPlan:
    """Which channels may match, how many rows are asked for, and the scan's bounds."""

    channel_ids: Sequence[str]
    team_id: str
    limit: int
    offset: int
    min_score: float
    exact_scan_rows: int
    max_scan_tuples: int
    ef_search: int = 40


def vector_literal(values: Sequence[float]) -> str:
    """The text form of a vector, as pgvector parses it."""
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def _hnsw_name(dimensions: int) -> str:
    return f"idx_index_post_chunks_hnsw_{dimensions}"


def _hit(row: Any) -> Hit:
    m = row._mapping
    return Hit(
        post_id=m["post_id"],
        chunk_index=m["chunk_index"],
        total_chunks=m["total_chunks"],
        channel_id=m["channel_id"],
        team_id=m["team_id"],
        user_id=m["user_id"],
        create_at=m["create_at"],
        content=m["content"],
        score=max(0.0, min(1.0, 1.0 - float(m["distance"]))),
    )


class VectorStore:
    """The index's tables; the only code that writes SQL against them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._vector_type: TypeInfo | None = None

    async def space(self) -> EmbeddingSpace | None:
        """The space of the stored vectors; None before anything was indexed."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(text("SELECT provider, model, dimensions FROM index_embedding_space"))).first()
        return EmbeddingSpace(row.provider, row.model, row.dimensions) if row else None

    async def adopt_space(self, space: EmbeddingSpace) -> EmbeddingSpace:
        """Record ``space`` unless one is recorded already (another replica may have won); the
        recorded one. Builds its HNSW index."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO index_embedding_space (id, provider, model, dimensions, recorded_at) "
                    "VALUES (1, :p, :m, :d, :now) ON CONFLICT (id) DO NOTHING"
                ),
                {"p": space.provider, "m": space.model, "d": space.dimensions, "now": _now_ms()},
            )
        recorded = await self.space()
        assert recorded is not None
        if recorded == space:
            await self.build_hnsw(space.dimensions)
        return recorded

    async def reset(self, space: EmbeddingSpace, *, build_hnsw: bool = True) -> None:
        """Empty the index and record ``space`` as the one its vectors will come from."""
        async with self.engine.begin() as conn:
            await conn.execute(text("LOCK TABLE index_embedding_space IN EXCLUSIVE MODE"))
            await _drop_hnsw(conn)
            await conn.execute(text("TRUNCATE index_post_chunks"))
            await conn.execute(
                text(
                    "INSERT INTO index_embedding_space (id, provider, model, dimensions, recorded_at) "
                    "VALUES (1, :p, :m, :d, :now) ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, "
                    "model = excluded.model, dimensions = excluded.dimensions, recorded_at = excluded.recorded_at"
                ),
                {"p": space.provider, "m": space.model, "d": space.dimensions, "now": _now_ms()},
            )
        if build_hnsw:
            await self.build_hnsw(space.dimensions)

    async def build_hnsw(self, dimensions: int) -> None:
        """The HNSW index of the space's dimensions (nothing when it exists)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            # An index build may take longer than the pool's statement timeout on a large table.
            await conn.execute(text("SET statement_timeout = 0"))
            await conn.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS {_hnsw_name(dimensions)} ON index_post_chunks "
                    f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops)"
                )
            )

    async def replace_posts(
        self,
        post_ids: Sequence[str],
        chunks: Sequence[Chunk],
        space: EmbeddingSpace,
        then: Callable[[AsyncConnection], Awaitable[object]] | None = None,
    ) -> None:
        """Replace every row of ``post_ids`` with ``chunks`` in one transaction, provided the
        recorded space is still ``space`` (a concurrent reset wins: nothing is written). ``then``
        runs in the same transaction (a reindex saves its cursor with the page it stored)."""
        async with self.engine.begin() as conn:
            recorded = (
                await conn.execute(text("SELECT provider, model, dimensions FROM index_embedding_space FOR SHARE"))
            ).first()
            if recorded is None or EmbeddingSpace(*recorded) != space:
                raise FailedPrecondition("the embedding model changed while indexing: reindex")
            # Locks in one sorted statement: two writers of overlapping posts cannot deadlock.
            await conn.execute(
                text(
                    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(p) AS h "
                    "FROM unnest(CAST(:ids AS text[])) AS p ORDER BY h) AS locks"
                ),
                {"ids": list(post_ids)},
            )
            await conn.execute(text("DELETE FROM index_post_chunks WHERE post_id = ANY(:ids)"), {"ids": list(post_ids)})
            if chunks:
                await self._copy(conn, chunks, space.dimensions)
            if then is not None:
                await then(conn)

    async def _copy(self, conn: AsyncConnection, chunks: Sequence[Chunk], dimensions: int) -> None:
        """COPY the rows in binary: no float is formatted or parsed as text (a row-by-row INSERT
        of vector literals was most of a reindex's database time)."""
        for c in chunks:
            if len(c.embedding) != dimensions:
                raise FailedPrecondition(
                    f"a vector of {len(c.embedding)} dimensions cannot join an index of {dimensions}"
                )
        raw = cast("psycopg.AsyncConnection[Any]", (await conn.get_raw_connection()).driver_connection)
        if self._vector_type is None:
            self._vector_type = await TypeInfo.fetch(raw, "vector")
        register_vector_info(raw, self._vector_type)
        async with raw.cursor() as cursor, cursor.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            for c in chunks:
                await copy.write_row(
                    (
                        c.post_id,
                        c.chunk_index,
                        c.total_chunks,
                        c.channel_id,
                        c.team_id,
                        c.user_id,
                        c.create_at,
                        c.content,
                        Vector(list(c.embedding)),
                    )
                )

    async def delete_posts(self, post_ids: Sequence[str]) -> int:
        """Remove the rows of ``post_ids``; how many of those posts had rows."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text("DELETE FROM index_post_chunks WHERE post_id = ANY(:ids) RETURNING post_id"),
                {"ids": list(post_ids)},
            )
            return len({row.post_id for row in result})

    async def search(self, query: Sequence[float], space: EmbeddingSpace, plan: SearchPlan) -> tuple[list[Hit], str]:
        """The best ``plan.limit`` rows after ``plan.offset`` among the permitted channels, and the
        scans that found them: "exact", "hnsw", "hnsw+exact" when the HNSW scan stopped short, or
        "none" while nothing is stored. FailedPrecondition when the stored vectors are not of
        ``space`` (the query's)."""
        if plan.limit <= 0:
            return [], "none"
        wanted = plan.limit + plan.offset
        params = {
            "provider": space.provider,
            "model": space.model,
            "dimensions": space.dimensions,
            "q": vector_literal(query),
            "channels": list(plan.channel_ids),
            "team": plan.team_id,
            "wanted": wanted,
            "exact_rows": plan.exact_scan_rows,
            "ef_search": str(min(max(plan.ef_search, wanted), 1000)),
            "max_scan_tuples": str(int(plan.max_scan_tuples)),
        }
        async with self.engine.begin() as conn:
            # One round trip reads the stored space, counts the permitted rows (up to the bound),
            # ranks them exactly when they are few and of the query's space, and sets the HNSW
            # scan's knobs for the rest of the transaction.
            first = list(await conn.execute(_FEW_OR_EXACT, params))
            stored = first[0]
            if stored.provider is None:
                return [], "none"
            if EmbeddingSpace(stored.provider, stored.model, stored.dimensions) != space:
                raise FailedPrecondition(
                    "the embedding model changed since the index was built: search needs a reindex"
                )
            if not plan.channel_ids:
                return [], "none"
            permitted = stored.permitted
            rows = [r for r in first if r.post_id is not None]
            scans = ["exact"]
            if permitted > plan.exact_scan_rows:
                rows = await _hnsw_scan(conn, space.dimensions, params)
                scans = ["hnsw"]
                if len(rows) < min(wanted, permitted):
                    rows = await _exact_scan(conn, params)
                    scans.append("exact")
        hits = [_hit(r) for r in rows[plan.offset :]]
        return [h for h in hits if h.score >= plan.min_score], "+".join(scans)

    async def indexed_post_count(self) -> int:
        """Posts with at least one row."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(text("SELECT count(DISTINCT post_id) FROM index_post_chunks"))).scalar_one())


_FILTER = "channel_id = ANY(:channels) AND (:team = '' OR team_id = :team)"


def _exact_sql(guard: str = "") -> str:
    # The plain column (not the indexed expression) keeps the planner off the HNSW index.
    return (
        f"SELECT {_COLUMNS}, embedding <=> CAST(:q AS vector) AS distance FROM index_post_chunks "
        f"WHERE {guard}{_FILTER} ORDER BY distance, post_id, chunk_index LIMIT :wanted"
    )


# At least one row: the stored space (nulls when none), ``permitted`` (capped at exact_rows + 1), the
# exact ranking when that is within exact_rows and the space is the query's (the scan is skipped
# otherwise: vectors of another space are never compared), and the HNSW knobs set for the
# transaction. Reading the space here spares every search a connection and round trips of its own.
_FEW_OR_EXACT = text(
    "WITH stored AS (SELECT provider, model, dimensions FROM index_embedding_space), "
    "few AS (SELECT count(*) AS permitted FROM (SELECT 1 FROM index_post_chunks "
    f"WHERE {_FILTER} LIMIT :exact_rows + 1) AS capped), "
    "knobs AS (SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
    "set_config('hnsw.ef_search', :ef_search, true), set_config('hnsw.max_scan_tuples', :max_scan_tuples, true)) "
    "SELECT stored.provider, stored.model, stored.dimensions, few.permitted, hit.* "
    "FROM few CROSS JOIN knobs LEFT JOIN stored ON true "
    "LEFT JOIN LATERAL ("
    + _exact_sql(
        "few.permitted <= :exact_rows AND stored.provider = :provider AND stored.model = :model "
        "AND stored.dimensions = :dimensions AND "
    )
    + ") AS hit ON true ORDER BY hit.distance, hit.post_id, hit.chunk_index"
)


async def _exact_scan(conn: AsyncConnection, params: dict[str, Any]) -> list[Any]:
    return list(await conn.execute(text(_exact_sql()), params))


async def _hnsw_scan(conn: AsyncConnection, dimensions: int, params: dict[str, Any]) -> list[Any]:
    # Iterative scan in strict order, ef_search and max_scan_tuples: set by _FEW_OR_EXACT.
    result = await conn.execute(
        text(
            f"SELECT {_COLUMNS}, embedding::vector({dimensions}) <=> CAST(:q AS vector({dimensions})) AS distance "
            f"FROM index_post_chunks WHERE {_FILTER} ORDER BY distance LIMIT :wanted"
        ),
        params,
    )
    return list(result)


async def _drop_hnsw(conn: AsyncConnection) -> None:
    names = await conn.execute(
        text("SELECT indexname FROM pg_indexes WHERE tablename = 'index_post_chunks' AND indexname LIKE :p"),
        {"p": "idx_index_post_chunks_hnsw_%"},
    )
    for (name,) in list(names):
        await conn.execute(text(f'DROP INDEX IF EXISTS "{name}"'))


def _now_ms() -> int:
    return int(time.time() * 1000)
