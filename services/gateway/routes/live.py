"""The per-post SSE stream: the plugin's ``postupdate`` payloads for clients that want every token.

Served from this replica's live view when it renders the post; from the llm service (``Attach``)
when another replica does; from the post itself when the reply is already final. Tool arguments
and results are redacted for everyone but the requester.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from aiohttp import web

from services.common.errors import DomainError
from services.common.mattermost import Post
from services.gateway.backends import conversation_events
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of
from services.gateway.rendering.live import replay
from services.gateway.rendering.reply import (
    FINAL_STATUSES,
    HANDED_OFF,
    PROP_REQUESTER,
    PROP_STREAM_STATUS,
    STREAMING,
    ReplyState,
)

logger = logging.getLogger(__name__)


async def _from_llm(request: web.Request, post: Post, viewer: str) -> AsyncIterator[dict[str, Any]]:
    deps = request.app[DEPS]
    state = ReplyState(post_id=post.id, requester_id=str(post.props.get(PROP_REQUESTER, "")))
    events = conversation_events(
        deps.backends.conversations.Attach,
        llm_pb2.AttachRequest(post_id=post.id),
        timeout=deps.settings.turn_timeout_seconds,
    )
    try:
        async for event in events:
            for update in state.apply(event):
                yield update.for_user(viewer, state.requester_id)
            if state.finished:
                return
    except DomainError as err:
        logger.info("no live turn for the post", extra={"post_id": post.id, "error": err.message})
    yield {"post_id": post.id, "control": "end"}


def _final(post: Post, viewer: str) -> list[dict[str, Any]]:
    status = str(post.props.get(PROP_STREAM_STATUS, "done"))
    state = ReplyState(post_id=post.id, requester_id=str(post.props.get(PROP_REQUESTER, "")), text=post.message)
    state.status = status if status in FINAL_STATUSES else "done"
    return replay(state, viewer)


async def serve_post_stream(request: web.Request, post: Post) -> web.StreamResponse:
    """Answer GET /post/{postid}/stream as ``text/event-stream``, one ``postupdate`` per event."""
    viewer = caller_of(request).user.id
    payloads = request.app[DEPS].replies.follow(post.id, viewer)
    if payloads is None:
        # Another replica may still be writing it (the turn still runs), else it is final.
        running = post.props.get(PROP_STREAM_STATUS) in (STREAMING, HANDED_OFF)
        payloads = _from_llm(request, post, viewer) if running else _as_async(_final(post, viewer))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    async for payload in payloads:
        await response.write(f"event: postupdate\ndata: {json.dumps(payload)}\n\n".encode())
    await response.write_eof()
    return response


async def _as_async(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item
