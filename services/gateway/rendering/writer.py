"""Writes one turn's event stream into its reply post: throttled patches, then a final patch.

The post is the durable view every client sees (Mattermost broadcasts ``post_edited``); the same
events go to this replica's live SSE subscribers as they arrive. When the replica stops, ``drain``
lets the replies being rendered finish within the grace period and marks the rest, so no post is
left "streaming" with nothing rendering it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient
from services.gateway.rendering.live import LiveReplies
from services.gateway.rendering.reply import ReplyState
from services.gateway.rendering.throttle import PatchSchedule, ThrottledPatcher

logger = logging.getLogger(__name__)

# How long the end of a finished turn's stream is waited for (it comes right after ``done``).
STREAM_END_SECONDS = 5.0


class ReplyWriter:
    """Renders event streams into reply posts, as the bot that wrote them."""

    def __init__(self, live: LiveReplies, patch_interval: float) -> None:
        self.live = live
        self.patch_interval = patch_interval
        # The tasks rendering a reply right now (what ``drain`` waits for).
        self._rendering: set[asyncio.Task[object]] = set()

    async def render(
        self,
        poster: MattermostClient,
        state: ReplyState,
        events: AsyncIterator[llm_pb2.ConversationEvent],
        *,
        resumable: bool = False,
    ) -> ReplyState:
        """Consume ``events`` into the post until the turn ends, pauses, or its stream breaks.

        A stream that breaks or ends without ``done`` leaves the text and marks the post
        interrupted. Cancelled (``drain`` at shutdown), the post keeps its text and is marked
        handed off when ``resumable`` (a claim lets another replica finish it), else interrupted;
        then the cancellation propagates.
        """
        task = asyncio.current_task()
        assert task is not None
        self._rendering.add(task)
        live = self.live.open(state)

        async def patch() -> None:
            await poster.patch_post(state.post_id, message=state.message(), props=state.post_props())

        patcher = ThrottledPatcher(patch, PatchSchedule(self.patch_interval))
        try:
            try:
                async for event in events:
                    before = state.version
                    live.publish(state.apply(event))
                    if state.finished:
                        break
                    if state.version != before:
                        patcher.changed()
            except DomainError as err:
                logger.warning("the turn's stream failed", extra={"post_id": state.post_id, "error": err.message})
                live.publish(state.interrupt())
            except asyncio.CancelledError:
                if resumable:
                    state.hand_off()
                else:
                    live.publish(state.interrupt())
                logger.info("stopped rendering a reply", extra={"post_id": state.post_id, "status": state.status})
                await patcher.close()
                try:
                    await patch()
                except DomainError as err:
                    logger.warning("marking a reply failed", extra={"post_id": state.post_id, "error": err.message})
                raise
            if not state.finished:
                live.publish(state.interrupt())
            await patcher.close()
            await patch()
            if state.finished:
                # After the post is final: nothing the user sees waits on it.
                await _read_to_end(events)
            return state
        finally:
            self._rendering.discard(task)
            await patcher.close()
            self.live.end(state.post_id)

    async def drain(self, relay_for: float, mark_within: float) -> None:
        """Let the replies being rendered go on for up to ``relay_for`` seconds (including any that
        start meanwhile); then cancel the rest, whose posts are marked (handed off or interrupted)
        within ``mark_within`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + relay_for
        while self._rendering and (left := deadline - loop.time()) > 0:
            logger.info("waiting for replies being rendered", extra={"replies": len(self._rendering)})
            await asyncio.wait(set(self._rendering), timeout=left, return_when=asyncio.FIRST_COMPLETED)
        rest = set(self._rendering)
        if not rest:
            return
        logger.warning(
            "replies still streaming at the end of the grace period are cut short", extra={"replies": len(rest)}
        )
        for task in rest:
            task.cancel()
        await asyncio.wait(rest, timeout=mark_within)


async def _read_to_end(events: AsyncIterator[llm_pb2.ConversationEvent]) -> None:
    """Read the little the stream sends after the turn's end (normally nothing but its close).

    A generator left at ``break`` ends only when it is collected, and so does the gRPC call's
    tracing span, which then may never reach the trace store; reading on ends both now.
    """
    with contextlib.suppress(TimeoutError, DomainError):
        async with asyncio.timeout(STREAM_END_SECONDS):
            async for _ in events:
                pass
