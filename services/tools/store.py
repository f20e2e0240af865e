"""The tools service's tables: tool policies and per-conversation web search state.

Counters live in PostgreSQL, not in memory, so they survive restarts and hold across replicas:
the conversation's counter row is locked by its conditional upsert, and the (conversation, query)
primary key refuses a repeated query even when two replicas race.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import QuotaExceeded
from services.tools.policies import Approval, AutoRunScope, ToolPolicy


def _now_ms() -> int:
    return int(time.time() * 1000)


class PolicyStore:
    """Reads and writes ``tools_policies`` (one row per tool an admin changed)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def all(self) -> dict[str, ToolPolicy]:
        """Every stored policy by tool name."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(text("SELECT tool_name, enabled, approval, auto_run_scope FROM tools_policies"))
            return {
                r.tool_name: ToolPolicy(r.tool_name, r.enabled, Approval(r.approval), AutoRunScope(r.auto_run_scope))
                for r in rows
            }

    async def put(self, policy: ToolPolicy, updated_by: str) -> None:
        """Insert or replace one tool's policy."""
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO tools_policies (tool_name, enabled, approval, auto_run_scope, updated_by, update_at)
                    VALUES (:name, :enabled, :approval, :scope, :by, :now)
                    ON CONFLICT (tool_name) DO UPDATE SET enabled = EXCLUDED.enabled,
                        approval = EXCLUDED.approval, auto_run_scope = EXCLUDED.auto_run_scope,
                        updated_by = EXCLUDED.updated_by, update_at = EXCLUDED.update_at
                    """
                ),
                {
                    "name": policy.tool_name,
                    "enabled": policy.enabled,
                    "approval": str(policy.approval),
                    "scope": str(policy.auto_run_scope),
                    "by": updated_by,
                    "now": _now_ms(),
                },
            )


@dataclass(frozen=True)
class SearchReservation:
    """The outcome of asking to run one search: allowed (and counted), or a repeat."""

    allowed: bool
    # True when the same tool call was reserved before (a retried execution): not counted again.
    retried: bool = False


class SearchLedger:
    """Per-conversation web search counting, repeat detection and the URLs results returned."""

    def __init__(self, engine: AsyncEngine, *, max_searches: int) -> None:
        self._engine = engine
        self._max = max_searches

    async def reserve(self, conversation_id: str, query_key: str, tool_call_id: str) -> SearchReservation:
        """Count one search of ``query_key`` in the conversation, atomically across replicas.

        Returns ``allowed=False`` for a query already searched in the conversation; raises
        QuotaExceeded when the conversation used up its searches. A retry of the same tool call
        (same ``tool_call_id``) is allowed again without counting.
        """
        async with self._engine.begin() as conn:
            inserted = await conn.execute(
                text(
                    """
                    INSERT INTO tools_web_searches (conversation_id, query_key, tool_call_id, create_at)
                    VALUES (:conv, :key, :call, :now)
                    ON CONFLICT (conversation_id, query_key) DO NOTHING
                    RETURNING 1
                    """
                ),
                {"conv": conversation_id, "key": query_key, "call": tool_call_id, "now": _now_ms()},
            )
            if inserted.first() is None:
                earlier = await conn.scalar(
                    text(
                        "SELECT tool_call_id FROM tools_web_searches WHERE conversation_id = :conv AND query_key = :key"
                    ),
                    {"conv": conversation_id, "key": query_key},
                )
                if tool_call_id and earlier == tool_call_id:
                    return SearchReservation(allowed=True, retried=True)
                return SearchReservation(allowed=False)
            # The conditional upsert takes the counter row's lock: concurrent reservations of the
            # same conversation queue here, and the one that would pass the limit gets no row.
            counted = await conn.execute(
                text(
                    """
                    INSERT INTO tools_conversation_counters (conversation_id, web_searches, update_at)
                    VALUES (:conv, 1, :now)
                    ON CONFLICT (conversation_id) DO UPDATE
                        SET web_searches = tools_conversation_counters.web_searches + 1,
                            update_at = EXCLUDED.update_at
                        WHERE tools_conversation_counters.web_searches < :max
                    RETURNING web_searches
                    """
                ),
                {"conv": conversation_id, "now": _now_ms(), "max": self._max},
            )
            if counted.first() is None:
                # Raising rolls the transaction back, the query row too: a refused search is no repeat.
                raise QuotaExceeded(f"this conversation already used its {self._max} web searches")
        return SearchReservation(allowed=True)

    async def remember_results(self, conversation_id: str, results: list[tuple[str, str]]) -> None:
        """Record (url, title) pairs a search returned, so web_fetch may open them."""
        if not results:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                text(
                    """
                    INSERT INTO tools_web_results (conversation_id, url, title, create_at)
                    VALUES (:conv, :url, :title, :now) ON CONFLICT DO NOTHING
                    """
                ),
                [{"conv": conversation_id, "url": u, "title": t, "now": _now_ms()} for u, t in results],
            )

    async def result_title(self, conversation_id: str, url: str) -> str | None:
        """The title of ``url`` if a search in the conversation returned it, else None."""
        async with self._engine.connect() as conn:
            title: str | None = await conn.scalar(
                text("SELECT title FROM tools_web_results WHERE conversation_id = :conv AND url = :url"),
                {"conv": conversation_id, "url": url},
            )
        return title
