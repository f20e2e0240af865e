"""Exactly-once across gateway replicas: a leased claim per user post, held in the llm service.

Every replica connected for a bot sees the same ``posted`` event; the first ``ClaimPost`` wins and
only the winner creates the reply post. The winner renews the lease while it renders; when the
lease runs out (the replica died) any replica's sweep takes the claim over and finishes the same
reply post (``Attach``), so a reply is neither lost nor written twice. A replica that stops while
rendering hands the claim back instead of letting the whole lease run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import AlreadyExists, DomainError, NotFound
from services.common.grpc_client import unary
from services.gateway.backends import Backends

logger = logging.getLogger(__name__)

# The shortest lease ClaimPost grants (0 means its default): a claim handed back with it is
# taken over by the next sweep of any live replica.
HAND_BACK_LEASE_SECONDS = 1


class ClaimsUnavailable(DomainError):
    """The llm service does not implement ClaimPost: fall back to Respond's own claim."""


class PostClaims:
    """This replica's side of the claims: claim, renew while rendering, finish, sweep."""

    def __init__(self, backends: Backends, claimant: str, lease_seconds: int) -> None:
        self.backends = backends
        self.claimant = claimant
        self.lease_seconds = lease_seconds

    async def _call(self, request: llm_pb2.ClaimPostRequest) -> llm_pb2.ClaimPostResponse:
        try:
            # Nobody waits on an HTTP answer here: ride out an llm replica restarting (or a
            # channel still backing off from before the llm service was up) within the deadline.
            return await self.backends.conversations.ClaimPost(request, wait_for_ready=True)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise ClaimsUnavailable("the llm service has no ClaimPost") from None
            raise
        # (other errors are mapped by ``unary`` in the callers)

    async def claim(
        self, post_id: str, response_post_id: str = "", *, lease_seconds: int = 0
    ) -> llm_pb2.ClaimPostResponse | None:
        """Claim (or renew) ``post_id``; None when another replica holds it or it is finished."""
        request = llm_pb2.ClaimPostRequest(
            post_id=post_id,
            claimant=self.claimant,
            lease_seconds=lease_seconds or self.lease_seconds,
            response_post_id=response_post_id,
        )
        try:
            return await unary(self._call, request)
        except AlreadyExists:
            return None

    async def finish(self, post_id: str) -> None:
        """The reply is final: no replica will take it over."""
        request = llm_pb2.ClaimPostRequest(
            post_id=post_id, claimant=self.claimant, lease_seconds=self.lease_seconds, finished=True
        )
        try:
            await unary(self._call, request)
        except DomainError as err:
            # The lease will expire; a sweeper then finds the post already final and finishes it.
            logger.warning("finishing a claim failed", extra={"post_id": post_id, "error": err.message})

    async def take_over_one(self) -> llm_pb2.ClaimPostResponse | None:
        """Take over one expired, unfinished claim (a reply some replica left); None if none."""
        request = llm_pb2.ClaimPostRequest(post_id="", claimant=self.claimant, lease_seconds=self.lease_seconds)
        try:
            return await unary(self._call, request)
        except (NotFound, AlreadyExists):
            return None

    @contextlib.asynccontextmanager
    async def held(self, post_id: str) -> AsyncIterator[None]:
        """Renew the claim on ``post_id`` every third of the lease while the block runs."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / 3)
                try:
                    if await self.claim(post_id) is None:
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
            try:
                await self.claim(post_id, lease_seconds=HAND_BACK_LEASE_SECONDS)
            except DomainError as err:
                logger.warning("handing a claim back failed", extra={"post_id": post_id, "error": err.message})
            raise
        finally:
            await stop_renewing()
