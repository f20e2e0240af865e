"""Relaying an ``Attach`` to the llm replica that runs the turn (gRPC stays in this module)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.common.errors import FailedPrecondition
from services.common.errors_map import domain_error_from_rpc_error
from services.common.grpc_client import ChannelPool

logger = logging.getLogger(__name__)


class AttachRelay:
    """Forwards Attach calls to a peer replica, with the caller's identity."""

    def __init__(self, pool: ChannelPool, timeout_seconds: float) -> None:
        self.pool = pool
        self.timeout_seconds = timeout_seconds

    async def attach(self, address: str, post_id: str) -> AsyncIterator[llm_pb2.AttachResponse]:
        """The peer's Attach stream. A peer that cannot be reached lost the turn: FailedPrecondition."""
        stub = llm_pb2_grpc.ConversationsStub(self.pool.get(address))
        call = stub.Attach(llm_pb2.AttachRequest(post_id=post_id), timeout=self.timeout_seconds)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                # The peer's own answer (NOT_FOUND, a deadline, ...) is the caller's.
                raise domain_error_from_rpc_error(err) from None
            logger.info("the replica running a turn is unreachable", extra={"post_id": post_id, "runner": address})
            raise FailedPrecondition("the llm replica running this turn is gone") from None
        finally:
            call.cancel()
