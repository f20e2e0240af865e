"""Exactly-once across gateway replicas: a leased claim per user post, held in the llm service.

Every replica connected for a bot sees the same ``posted`` event; the first ``ClaimPost`` wins and
only the winner creates the reply post. The winner renews the lease while it renders
(``RenewClaim``); when the lease runs out (the replica died) any replica's sweep
(``TakeOverExpiredClaim``) takes the claim over and finishes the same reply post (``Attach``), so
a reply is neither lost nor written twice. A replica that stops while rendering hands the claim
back (``ReleaseClaim``) instead of letting the whole lease run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound
from services.common.grpc_client import unary
from services.gateway.backends import Backends

logger = logging.getLogger(__name__)


class ReplicaClaims:
    """This replica's side of the claims: claim, renew while rendering, finish, hand back, sweep.

    Every call waits for the llm service to be ready: nobody waits on an HTTP answer here, so it
    rides out an llm replica restarting (or a channel still backing off from before the llm
    service was up) within its deadline.
    """

    def __init__(self, backends: Backends, claimant: str, lease_seconds: int) -> None:
        self.backends = backends
        self.claimant = claimant
        self.lease_seconds = lease_seconds

    async def claim(self, post_id: str) -> bool:
        """Claim ``post_id``; False when another replica holds it or it is finished."""
        request = llm_pb2.ClaimPostRequest(post_id=post_id, claimant=self.claimant, lease_seconds=self.lease_seconds)
        try:
            await unary(self.backends.conversations.ClaimPost, request, wait_for_ready=True)
        except AlreadyExists:
            return False
        return True

    async def renew(self, post_id: str, response_post_id: str = "") -> bool:
        """Extend this replica's lease on ``post_id`` (recording the reply post when given);
        False when another replica took the claim over."""
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

    @contextlib.asynccontextmanager
    async def held(self, post_id: str) -> AsyncIterator[None]:
        """Renew the claim on ``post_id`` every third of the lease while the block runs."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / 3)
                try:
                    if not await self.renew(post_id):
                        logger.warning("lost the claim on a post being rendered", extra={"post_id": post_id})
                except DomainError as err:
                    logger.warning("renewing a claim failed", extra={"post_id": post_id, "error": err.message})

        async def stop_renewing() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        task = asyncio.create_task(renew())
        try:
            yield
        except asyncio.CancelledError:
            # This replica stops rendering (shutdown): hand the claim back, after the last renewal.
            await stop_renewing()
            request = llm_pb2.ReleaseClaimRequest(post_id=post_id, claimant=self.claimant)
            try:
                await unary(self.backends.conversations.ReleaseClaim, request, wait_for_ready=True)
            except DomainError as err:
                logger.warning("handing a claim back failed", extra={"post_id": post_id, "error": err.message})
            raise
        finally:
            await stop_renewing()
