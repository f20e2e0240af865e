"""Reads and writes of ``LLM_HandledPosts`` as leased claims. Lease times come from the
database clock, so llm replicas with skewed clocks agree on when a lease ran out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import Conflict

_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
_COLUMNS = "postid, conversationid, responsepostid, claimant, leaseuntil, finished"


@dataclass(frozen=True)
class ClaimRow:
    """One claim as stored; conversation_id is "" until a turn started on the post."""

    post_id: str
    conversation_id: str
    response_post_id: str
    claimant: str
    lease_until: int
    finished: bool


def _row(row: Any) -> ClaimRow:
    m = row._mapping
    return ClaimRow(
        post_id=m["postid"],
        conversation_id=m["conversationid"],
        response_post_id=m["responsepostid"],
        claimant=m["claimant"],
        lease_until=m["leaseuntil"],
        finished=m["finished"],
    )


class ClaimStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(
        self,
        post_id: str,
        claimant: str,
        lease_ms: int,
        response_post_id: str,
        finished: bool,
        decide: Callable[[ClaimRow, int], bool],
    ) -> tuple[ClaimRow, bool]:
        """Create the claim, or apply ``decide(existing, now)`` to the locked existing one (it
        raises to refuse). Returns the claim as written and whether it was taken over."""
        async with self.engine.begin() as conn:
            inserted = (
                await conn.execute(
                    text(
                        "INSERT INTO llm_handledposts (postid, conversationid, responsepostid, claimant, leaseuntil, "
                        f"finished, createdat) VALUES (:p, '', :r, :c, {_NOW} + :lease, :f, {_NOW}) "
                        f"ON CONFLICT (postid) DO NOTHING RETURNING {_COLUMNS}"
                    ),
                    {"p": post_id, "r": response_post_id, "c": claimant, "lease": lease_ms, "f": finished},
                )
            ).first()
            if inserted is not None:
                return _row(inserted), False
            # The row exists (or a racing insert just committed it): decide under its lock.
            locked = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS}, {_NOW} AS now FROM llm_handledposts WHERE postid = :p FOR UPDATE"),
                    {"p": post_id},
                )
            ).first()
            if locked is None:  # released between the two statements: the next call creates it
                raise Conflict("the claim changed while it was being taken; try again")
            taken_over = decide(_row(locked), locked.now)
            updated = (
                await conn.execute(
                    text(
                        f"UPDATE llm_handledposts SET claimant = :c, leaseuntil = {_NOW} + :lease, "
                        "finished = finished OR :f, "
                        "responsepostid = CASE WHEN :r = '' THEN responsepostid ELSE :r END "
                        f"WHERE postid = :p RETURNING {_COLUMNS}"
                    ),
                    {"p": post_id, "r": response_post_id, "c": claimant, "lease": lease_ms, "f": finished},
                )
            ).one()
            return _row(updated), taken_over

    async def take_over_expired(self, claimant: str, lease_ms: int) -> ClaimRow | None:
        """Take one expired, unfinished claim; concurrent sweepers skip each other's rows."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"UPDATE llm_handledposts SET claimant = :c, leaseuntil = {_NOW} + :lease "
                        "WHERE postid = (SELECT postid FROM llm_handledposts WHERE NOT finished AND claimant <> '' "
                        f"AND leaseuntil < {_NOW} ORDER BY leaseuntil LIMIT 1 FOR UPDATE SKIP LOCKED) "
                        f"RETURNING {_COLUMNS}"
                    ),
                    {"c": claimant, "lease": lease_ms},
                )
            ).first()
            return None if row is None else _row(row)
