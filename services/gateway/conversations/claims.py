"""Exactly-once across gateway replicas: a leased claim per user post, held in the llm service.

Every replica connected for a bot sees the same ``posted`` event; the first ``ClaimPost`` wins and
only the winner creates the reply post. The winner renews the lease until the reply is final (all
of a replica's claims in one ``RenewClaims`` call per tick); when the lease runs out (the replica
died) any replica's sweep (``TakeOverExpiredClaim``) takes the claim over and finishes the same
reply post (``Attach``), so a reply is neither lost nor written twice. A replica that stops while
rendering hands the claim back (``ReleaseClaim``) instead of letting the whole lease run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound
from services.common.grpc_client import unary
from services.gateway.backends import Backends

logger = logging.getLogger(__name__)

# Claims per RenewClaims call (the llm takes up to 1000): a replica's answers at once fit in one.
RENEW_BATCH = 500


class ReplicaClaims:
    """This replica's side of the claims: claim, renew until final, finish, hand back, sweep.

    Every call waits for the llm service to be ready: nobody waits on an HTTP answer here, so it
    rides out an llm replica restarting (or a channel still backing off from before the llm
    service was up) within its deadline.
    """

    def __init__(self, backends: Backends, claimant: str, lease_seconds: int) -> None:
        self.backends = backends
        self.claimant = claimant
        self.lease_seconds = lease_seconds
        # The posts whose claims are renewed, with how many ``held`` blocks hold each.
        self._held: dict[str, int] = {}
        # The posts being answered here, claimed or not yet, with how many ``answering`` blocks
        # mark each.
        self._answering: dict[str, int] = {}
        self._renewing: asyncio.Task[None] | None = None
        self._renewal: asyncio.Task[None] | None = None

    async def claim(self, post_id: str) -> llm_pb2.ClaimPostResponse | None:
        """Claim ``post_id``; None when another replica holds it or it is finished. A claim taken
        over from a replica whose lease ran out names the reply post that replica left, if any."""
        request = llm_pb2.ClaimPostRequest(post_id=post_id, claimant=self.claimant, lease_seconds=self.lease_seconds)
        try:
            return await unary(self.backends.conversations.ClaimPost, request, wait_for_ready=True)
        except AlreadyExists:
            return None

    async def record_reply(self, post_id: str, response_post_id: str) -> bool:
        """Record the reply post on this replica's claim on ``post_id`` (extending its lease), so
        a replica taking the claim over finishes that post; False when another replica took the
        claim over."""
        request = llm_pb2.RenewClaimRequest(
            post_id=post_id,
            claimant=self.claimant,
            lease_seconds=self.lease_seconds,
            response_post_id=response_post_id,
        )
        try:
            await unary(self.backends.conversations.RenewClaim, request, wait_for_ready=True)
        except FailedPrecondition:
            return False
        return True

    async def finish(self, post_id: str) -> None:
        """The reply is final: no replica will take it over."""
        request = llm_pb2.FinishClaimRequest(post_id=post_id, claimant=self.claimant)
        try:
            await unary(self.backends.conversations.FinishClaim, request, wait_for_ready=True)
        except DomainError as err:
            # The lease will expire; a sweeper then finds the post already final and finishes it.
            logger.warning("finishing a claim failed", extra={"post_id": post_id, "error": err.message})

    async def take_over_one(self) -> llm_pb2.TakeOverExpiredClaimResponse | None:
        """Take over one expired, unfinished claim (a reply some replica left); None if none."""
        request = llm_pb2.TakeOverExpiredClaimRequest(claimant=self.claimant, lease_seconds=self.lease_seconds)
        try:
            return await unary(self.backends.conversations.TakeOverExpiredClaim, request, wait_for_ready=True)
        except NotFound:
            return None

    def holds(self, post_id: str) -> bool:
        """Whether this replica is answering ``post_id``: claiming it (``answering``) or rendering
        its reply (``held``)."""
        return post_id in self._held or post_id in self._answering

    @contextlib.contextmanager
    def answering(self, post_id: str) -> Iterator[None]:
        """Mark ``post_id`` as answered here from before its claim: a ``ClaimPost`` that commits
        after its deadline is tried again, and the lease it took may run out meanwhile; this
        replica's sweep must then leave the post to the answer under way."""
        self._answering[post_id] = self._answering.get(post_id, 0) + 1
        try:
            yield
        finally:
            _count_down(self._answering, post_id)

    @contextlib.asynccontextmanager
    async def held(self, post_id: str) -> AsyncIterator[None]:
        """Keep the claim on ``post_id`` renewed while the block runs: every claim this replica
        holds is renewed together, one ``RenewClaims`` call per third of the lease."""
        self._held[post_id] = self._held.get(post_id, 0) + 1
        if self._renewing is None:
            self._renewing = asyncio.create_task(self._renew_loop(), name="claims-renewal")
        let_go = False
        try:
            yield
        except asyncio.CancelledError:
            # This replica stops rendering (shutdown): hand the claim back, after any renewal in
            # flight (which could otherwise extend the lease again after the release).
            let_go = True
            self._let_go(post_id)
            if self._renewal is not None and not self._renewal.done():
                await asyncio.wait([self._renewal])
            request = llm_pb2.ReleaseClaimRequest(post_id=post_id, claimant=self.claimant)
            try:
                await unary(self.backends.conversations.ReleaseClaim, request, wait_for_ready=True)
            except DomainError as err:
                logger.warning("handing a claim back failed", extra={"post_id": post_id, "error": err.message})
            raise
        finally:
            if not let_go:
                self._let_go(post_id)

    def _let_go(self, post_id: str) -> None:
        """Stop renewing ``post_id`` (once per ``held``); the loop ends with the last claim."""
        _count_down(self._held, post_id)
        if not self._held and self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None

    async def _renew_loop(self) -> None:
        period = self.lease_seconds / 3
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            # Its own task: the loop may be cancelled (its last claim let go) mid-call, and a
            # release waits for the call to end.
            self._renewal = asyncio.create_task(self._renew_held())
            try:
                await asyncio.shield(self._renewal)
            except Exception:
                logger.exception("renewing claims failed")
            await asyncio.sleep(max(0.0, period - (loop.time() - started)))

    async def _renew_held(self) -> None:
        """Extend every claim this replica holds now, ``RENEW_BATCH`` per call."""
        post_ids = list(self._held)
        for start in range(0, len(post_ids), RENEW_BATCH):
            batch = post_ids[start : start + RENEW_BATCH]
            request = llm_pb2.RenewClaimsRequest(
                claimant=self.claimant, lease_seconds=self.lease_seconds, post_ids=batch
            )
            try:
                # Within a third of the lease, so a call that fails leaves time to try again.
                renewed = await unary(
                    self.backends.conversations.RenewClaims,
                    request,
                    wait_for_ready=True,
                    timeout=max(1.0, self.lease_seconds / 3),
                )
            except DomainError as err:
                logger.warning("renewing claims failed", extra={"posts": len(batch), "error": err.message})
                continue
            for post_id in renewed.lost_post_ids:
                if post_id in self._held:
                    logger.warning("lost the claim on a post being rendered", extra={"post_id": post_id})


def _count_down(counts: dict[str, int], key: str) -> None:
    """One block marking ``key`` ended: forget it with the last."""
    count = counts.pop(key, 0) - 1
    if count > 0:
        counts[key] = count
