"""Starting a turn from an HTTP route: wait for its first event (so a refusal becomes the route's
HTTP error), then render the rest into the post in the background and answer at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient
from services.gateway.rendering.reply import ReplyState
from services.gateway.rendering.writer import ReplyWriter

logger = logging.getLogger(__name__)

_background: set[asyncio.Task[None]] = set()


async def launch(
    writer: ReplyWriter,
    poster: MattermostClient,
    state: ReplyState,
    events: AsyncIterator[llm_pb2.ConversationEvent],
    *,
    new_post: bool = False,
) -> None:
    """Raise the turn's error if it fails before its first event; otherwise render in background.

    ``new_post``: the post was created for this turn, so a refused turn deletes it: the caller
    gets the error instead, and no empty post is left streaming with nothing rendering it.
    """
    try:
        first = await anext(events)
    except StopAsyncIteration:
        first = None
    except BaseException:
        if new_post:
            await _discard(poster, state.post_id)
        raise

    async def rest() -> AsyncIterator[llm_pb2.ConversationEvent]:
        if first is not None:
            yield first
            async for event in events:
                yield event

    async def render() -> None:
        try:
            await writer.render(poster, state, rest())
        except DomainError as err:
            logger.warning("rendering a turn failed", extra={"post_id": state.post_id, "error": err.message})
        except Exception:
            logger.exception("rendering a turn failed", extra={"post_id": state.post_id})

    task = asyncio.create_task(render())
    # Held so the task is not garbage-collected mid-turn.
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _discard(poster: MattermostClient, post_id: str) -> None:
    try:
        await poster.delete_post(post_id)
    except DomainError as err:
        logger.warning("deleting the reply of a refused turn failed", extra={"post_id": post_id, "error": err.message})
