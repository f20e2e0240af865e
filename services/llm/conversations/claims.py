"""Leased claims on users' posts: exactly one gateway replica answers a post however many saw its
``posted`` event, and a live replica finishes the reply of a dead one once the dead one's lease
ran out.

One RPC per step of a claim's life (``ClaimPost``, ``RenewClaim``/``RenewClaims``, ``FinishClaim``,
``ReleaseClaim``, ``TakeOverExpiredClaim``), and this module the only writer of
``LLM_HandledPosts`` (through ``ClaimStore``). Who may take a claim is a pure function of the
stored claim and the database clock (``decide``), applied under a row lock by the store, so that
two claimants racing on one post serialise.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from services.llm.conversations.claimstore import ClaimRow, ClaimStore

# The proto's default lease, and a ceiling: a lease longer than the turn timeout would only delay
# the takeover of a dead replica's reply.
DEFAULT_LEASE_SECONDS = 30
MAX_LEASE_SECONDS = 3600
# One RenewClaims statement's ids: a replica renders far fewer answers at once than this.
MAX_RENEWED_AT_ONCE = 1000


@dataclass(frozen=True)
class ClaimGrant:
    """A claim as its holder sees it."""

    post_id: str
    response_post_id: str
    taken_over: bool = False


def decide(row: ClaimRow, claimant: str, now_ms: int, *, finishing: bool = False) -> bool:
    """Whether ``claimant`` may hold the existing claim ``row`` now (to answer the post, or with
    ``finishing`` to mark it answered); True when it takes the claim over from another claimant.
    Raises AlreadyExists when it may not."""
    if row.finished:
        if finishing and row.claimant == claimant:
            return False  # finishing twice is harmless (a retried call)
        raise AlreadyExists("this post has already been answered")
    if row.claimant == claimant:
        return False
    if row.lease_until > now_ms:
        raise AlreadyExists("another replica holds the claim on this post")
    return True


class PostClaimLeases:
    """The claim RPCs' domain side: validation, then the store applies the rules."""

    def __init__(self, store: ClaimStore) -> None:
        self.store = store

    async def claim(self, post_id: str, claimant: str, lease_seconds: int) -> ClaimGrant:
        """Claim ``post_id``, or take over its expired claim."""
        _require(post_id=post_id, claimant=claimant)
        row, taken_over = await self.store.claim(
            post_id, claimant, _lease_ms(lease_seconds), lambda existing, now: decide(existing, claimant, now)
        )
        return ClaimGrant(row.post_id, row.response_post_id, taken_over)

    async def renew(self, post_id: str, claimant: str, lease_seconds: int, response_post_id: str) -> ClaimGrant:
        """Extend the lease ``claimant`` holds, recording the reply post when given."""
        _require(post_id=post_id, claimant=claimant)
        row = await self.store.renew(post_id, claimant, _lease_ms(lease_seconds), response_post_id)
        if row is None:
            raise FailedPrecondition("this replica no longer holds the claim on this post")
        return ClaimGrant(row.post_id, row.response_post_id)

    async def renew_many(self, post_ids: list[str], claimant: str, lease_seconds: int) -> list[str]:
        """Extend the leases ``claimant`` holds among ``post_ids``; returns the ones it does not
        hold (in the order asked)."""
        _require(claimant=claimant)
        if len(post_ids) > MAX_RENEWED_AT_ONCE:
            raise InvalidInput(f"post_ids holds at most {MAX_RENEWED_AT_ONCE} ids", field="post_ids")
        if not all(post_ids):
            raise InvalidInput("post_ids must not hold an empty id", field="post_ids")
        lease_ms = _lease_ms(lease_seconds)
        if not post_ids:
            return []
        extended = await self.store.renew_many(post_ids, claimant, lease_ms)
        return [post_id for post_id in post_ids if post_id not in extended]

    async def finish(self, post_id: str, claimant: str) -> None:
        """Mark the post answered, whether or not it was claimed."""
        _require(post_id=post_id, claimant=claimant)
        # The usual case, the claimant finishing its own claim, is one statement; anything else
        # (no claim, another claimant's) goes through the rules under the row's lock.
        if await self.store.finish_held(post_id, claimant):
            return
        await self.store.claim(
            post_id, claimant, 0, lambda existing, now: decide(existing, claimant, now, finishing=True), finish=True
        )

    async def release(self, post_id: str, claimant: str) -> None:
        """End the lease ``claimant`` holds now, leaving the claim unfinished for a sweep."""
        _require(post_id=post_id, claimant=claimant)
        if not await self.store.release(post_id, claimant):
            raise FailedPrecondition("this replica does not hold an unfinished claim on this post")

    async def take_over_expired(self, claimant: str, lease_seconds: int) -> ClaimGrant:
        """Take over any one expired, unfinished claim."""
        _require(claimant=claimant)
        row = await self.store.take_over_expired(claimant, _lease_ms(lease_seconds))
        if row is None:
            raise NotFound("no expired claim to take over")
        return ClaimGrant(row.post_id, row.response_post_id, taken_over=True)


def _require(**fields: str) -> None:
    for name, value in fields.items():
        if not value:
            raise InvalidInput(f"{name} is required", field=name)


def _lease_ms(lease_seconds: int) -> int:
    if not 0 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise InvalidInput(f"lease_seconds must be between 0 and {MAX_LEASE_SECONDS}", field="lease_seconds")
    return (lease_seconds or DEFAULT_LEASE_SECONDS) * 1000
