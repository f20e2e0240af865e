"""Reads and writes of ``LLM_HandledPosts``, the leased claims on users' posts; ``claims.py`` is
its only user. Lease times come from the database clock, so llm replicas with skewed clocks agree
on when a lease ran out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import Conflict

_NOW = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
_COLUMNS = "postid, responsepostid, claimant, leaseuntil, finished"
# A claim changing hands names the reply post its answer's turn writes into, when a turn runs:
# its claimant may have died (or lost the claim) after starting the turn and before recording
# the reply, and the new claimant must finish that reply rather than start a second one.
_REPLY_OF_ITS_TURN = (
    "responsepostid = COALESCE((SELECT s.responsepostid FROM llm_streams s WHERE s.requestpostid = "
    "llm_handledposts.postid AND s.requestpostid <> '' AND s.kind = 'conversation'), responsepostid)"
)


@dataclass(frozen=True)
class ClaimRow:
    """One claim as stored; response_post_id is "" until its claimant recorded the reply post."""

    post_id: str
    response_post_id: str
    claimant: str
    lease_until: int
    finished: bool


def _row(row: Any) -> ClaimRow:
    m = row._mapping
    return ClaimRow(
        post_id=m["postid"],
        response_post_id=m["responsepostid"],
        claimant=m["claimant"],
        lease_until=m["leaseuntil"],
        finished=m["finished"],
    )


class ClaimStore:
    """The claim, renew, release and take-over queries on ``LLM_HandledPosts``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(
        self,
        post_id: str,
        claimant: str,
        lease_ms: int,
        decide: Callable[[ClaimRow, int], bool],
        *,
        finish: bool = False,
    ) -> tuple[ClaimRow, bool]:
        """Create the claim (finished with ``finish``), or apply ``decide(existing, now)`` to the
        locked existing one (it raises to refuse). Returns the claim as written and whether it
        was taken over."""
        params = {"p": post_id, "c": claimant, "lease": lease_ms, "f": finish}
        async with self.engine.begin() as conn:
            inserted = (
                await conn.execute(
                    text(
                        "INSERT INTO llm_handledposts (postid, responsepostid, claimant, leaseuntil, finished, "
                        f"createdat) VALUES (:p, '', :c, {_NOW} + :lease, :f, {_NOW}) "
                        f"ON CONFLICT (postid) DO NOTHING RETURNING {_COLUMNS}"
                    ),
                    params,
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
            if locked is None:  # deleted between the two statements: the next call creates it
                raise Conflict("the claim changed while it was being taken; try again")
            taken_over = decide(_row(locked), locked.now)
            updated = (
                await conn.execute(
                    text(
                        f"UPDATE llm_handledposts SET claimant = :c, leaseuntil = {_NOW} + :lease, "
                        f"finished = finished OR :f, {_REPLY_OF_ITS_TURN} WHERE postid = :p RETURNING {_COLUMNS}"
                    ),
                    params,
                )
            ).one()
            return _row(updated), taken_over

    async def finish_held(self, post_id: str, claimant: str) -> bool:
        """Mark the claim ``claimant`` holds finished, in one statement; False when it holds none
        (the general ``claim`` path then decides)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    f"UPDATE llm_handledposts SET leaseuntil = {_NOW}, finished = true "
                    "WHERE postid = :p AND claimant = :c"
                ),
                {"p": post_id, "c": claimant},
            )
            return result.rowcount == 1

    async def renew(self, post_id: str, claimant: str, lease_ms: int, response_post_id: str) -> ClaimRow | None:
        """Extend the unfinished claim ``claimant`` holds (recording a non-empty reply post);
        None when it does not hold one."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"UPDATE llm_handledposts SET leaseuntil = {_NOW} + :lease, "
                        "responsepostid = CASE WHEN :r = '' THEN responsepostid ELSE :r END "
                        f"WHERE postid = :p AND claimant = :c AND NOT finished RETURNING {_COLUMNS}"
                    ),
                    {"p": post_id, "c": claimant, "lease": lease_ms, "r": response_post_id},
                )
            ).first()
            return None if row is None else _row(row)

    async def renew_many(self, post_ids: list[str], claimant: str, lease_ms: int) -> set[str]:
        """Extend every unfinished claim among ``post_ids`` that ``claimant`` holds, in one
        statement; returns the ids it extended."""
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                text(
                    f"UPDATE llm_handledposts SET leaseuntil = {_NOW} + :lease "
                    "WHERE postid = ANY(:ps) AND claimant = :c AND NOT finished RETURNING postid"
                ),
                {"ps": post_ids, "c": claimant, "lease": lease_ms},
            )
            return {row.postid for row in rows}

    async def release(self, post_id: str, claimant: str) -> bool:
        """End the lease of the unfinished claim ``claimant`` holds; False when it holds none."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    f"UPDATE llm_handledposts SET leaseuntil = {_NOW} "
                    "WHERE postid = :p AND claimant = :c AND NOT finished"
                ),
                {"p": post_id, "c": claimant},
            )
            return result.rowcount == 1

    async def take_over_expired(self, claimant: str, lease_ms: int) -> ClaimRow | None:
        """Take one expired, unfinished claim; concurrent sweepers skip each other's rows."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"UPDATE llm_handledposts SET claimant = :c, leaseuntil = {_NOW} + :lease, "
                        f"{_REPLY_OF_ITS_TURN} "
                        "WHERE postid = (SELECT postid FROM llm_handledposts WHERE NOT finished "
                        f"AND leaseuntil < {_NOW} ORDER BY leaseuntil LIMIT 1 FOR UPDATE SKIP LOCKED) "
                        f"RETURNING {_COLUMNS}"
                    ),
                    {"c": claimant, "lease": lease_ms},
                )
            ).first()
            return None if row is None else _row(row)
