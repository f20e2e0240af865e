"""Writes one turn's event stream into its reply post: throttled patches, then a final patch.

The post is the durable view every client sees (Mattermost broadcasts ``post_edited``); the same
events go to this replica's live SSE subscribers as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient
from services.gateway.rendering.live import LiveReplies
from services.gateway.rendering.reply import ReplyState
from services.gateway.rendering.throttle import PatchSchedule, ThrottledPatcher

logger = logging.getLogger(__name__)


class ReplyWriter:
    """Renders event streams into reply posts, as the bot that wrote them."""

    def __init__(self, live: LiveReplies, patch_interval: float) -> None:
        self.live = live
        self.patch_interval = patch_interval

    async def render(
        self, poster: MattermostClient, state: ReplyState, events: AsyncIterator[llm_pb2.ConversationEvent]
    ) -> ReplyState:
        """Consume ``events`` into the post until the turn ends, pauses, or its stream breaks.

        A stream that breaks or ends without ``done`` leaves the text and marks the post
        interrupted. Cancellation (this replica shutting down) propagates without a final patch:
        the claim's lease runs out and another replica takes the post over.
        """
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
            if not state.finished:
                live.publish(state.interrupt())
            await patcher.close()
            await patch()
            return state
        finally:
            await patcher.close()
            self.live.end(state.post_id)
