"""Leased claims on users' posts (``Conversations.ClaimPost``): exactly one gateway replica
answers a post however many saw its ``posted`` event, and a live replica finishes the reply of a
dead one once the dead one's lease ran out.

The rules are a pure function of the stored claim and the database clock (``decide``), applied
under a row lock by the store, so that two claimants racing on one post serialise.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import AlreadyExists, InvalidInput, NotFound
from services.llm.conversations.claimstore import ClaimRow, ClaimStore

# The proto's default lease, and a ceiling: a lease longer than the turn timeout would only delay
# the takeover of a dead replica's reply.
DEFAULT_LEASE_SECONDS = 30
MAX_LEASE_SECONDS = 3600


@dataclass(frozen=True)
class ClaimRequest:
    """One ClaimPost call: ``post_id`` "" sweeps for an expired claim."""

    post_id: str
    claimant: str
    lease_seconds: int = 0
    response_post_id: str = ""
    finished: bool = False

    @property
    def lease_ms(self) -> int:
        return (self.lease_seconds or DEFAULT_LEASE_SECONDS) * 1000


@dataclass(frozen=True)
class ClaimGrant:
    """What a successful claim answers."""

    post_id: str
    response_post_id: str
    taken_over: bool = False


def decide(row: ClaimRow, req: ClaimRequest, now_ms: int) -> bool:
    """Whether ``req`` may hold the existing claim ``row`` now; True when it takes the claim over
    from another claimant. Raises AlreadyExists when it may not."""
    if row.finished:
        if req.finished and row.claimant == req.claimant:
            return False  # finishing twice is harmless (a retried call)
        raise AlreadyExists("this post has already been answered")
    if row.claimant == req.claimant:
        return False
    if not row.claimant:
        # Claimed by a Respond call without ClaimPost (no lease): never taken over.
        raise AlreadyExists("this post is being answered by another caller")
    if row.lease_until > now_ms:
        raise AlreadyExists("another replica holds the claim on this post")
    return True


class PostClaims:
    """ClaimPost's domain side: validation, then the store applies ``decide`` under a lock."""

    def __init__(self, store: ClaimStore) -> None:
        self.store = store

    async def claim(self, req: ClaimRequest) -> ClaimGrant:
        """Claim, renew, finish or (with post_id "") take over one expired claim."""
        if not req.claimant:
            raise InvalidInput("claimant is required", field="claimant")
        if not 0 <= req.lease_seconds <= MAX_LEASE_SECONDS:
            raise InvalidInput(f"lease_seconds must be between 0 and {MAX_LEASE_SECONDS}", field="lease_seconds")
        if not req.post_id:
            if req.finished:
                raise InvalidInput("a sweep cannot finish a claim", field="finished")
            taken = await self.store.take_over_expired(req.claimant, req.lease_ms)
            if taken is None:
                raise NotFound("no expired claim to take over")
            return ClaimGrant(taken.post_id, taken.response_post_id, taken_over=True)
        row, taken_over = await self.store.claim(
            req.post_id,
            req.claimant,
            req.lease_ms,
            req.response_post_id,
            req.finished,
            lambda existing, now: decide(existing, req, now),
        )
        return ClaimGrant(row.post_id, row.response_post_id, taken_over=taken_over)
