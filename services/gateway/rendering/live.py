"""Live ``postupdate`` streams per reply post, for SSE clients that want every token.

The replica rendering a post publishes each payload here; subscribers get a replay of the
current state first (so a late client sees the text so far), then live payloads, redacted for
everyone but the requester. Bounded queues: a client that cannot keep up is dropped rather than
letting the renderer's memory grow.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from services.gateway.rendering.reply import PostUpdate, ReplyState

logger = logging.getLogger(__name__)

_QUEUE_LIMIT = 1024


@dataclass(eq=False)
class _Subscriber:
    user_id: str
    # Payloads, then None when the reply ends.
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(_QUEUE_LIMIT))


@dataclass(eq=False)
class LiveReply:
    """The live view of one reply post being rendered by this replica."""

    state: ReplyState
    subscribers: list[_Subscriber] = field(default_factory=list)

    def publish(self, updates: list[PostUpdate]) -> None:
        """Queue ``updates`` for each subscriber, redacted for all but the requester; drop one that is full."""
        for subscriber in list(self.subscribers):
            for update in updates:
                try:
                    subscriber.queue.put_nowait(update.for_user(subscriber.user_id, self.state.requester_id))
                except asyncio.QueueFull:
                    logger.warning("dropping a slow SSE subscriber", extra={"post_id": self.state.post_id})
                    self.subscribers.remove(subscriber)
                    break

    def close(self) -> None:
        """Tell every subscriber the reply ended."""
        for subscriber in self.subscribers:
            try:
                subscriber.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass
        self.subscribers.clear()


def replay(state: ReplyState, user_id: str) -> list[dict[str, Any]]:
    """Payloads that bring a new subscriber up to the current state."""
    post_id = state.post_id
    out: list[dict[str, Any]] = [{"post_id": post_id, "control": "start"}]
    if state.reasoning:
        out.append({"post_id": post_id, "control": "reasoning_summary", "reasoning": state.reasoning})
    if state.text:
        out.append({"post_id": post_id, "next": state.text})
    if state.annotations:
        out.append({"post_id": post_id, "control": "annotations", "annotations": json.dumps(state.annotations)})
    if state.tool_calls:
        out.append(state.tool_call_update().for_user(user_id, state.requester_id))
    if state.finished:
        out.append({"post_id": post_id, "next": state.message()})
        out.append({"post_id": post_id, "control": "cancel" if state.status == "stopped" else "end"})
    return out


class LiveReplies:
    """Every reply post this replica is rendering, by post id."""

    def __init__(self) -> None:
        self._replies: dict[str, LiveReply] = {}

    def open(self, state: ReplyState) -> LiveReply:
        """Start the live view of a reply this replica renders."""
        live = LiveReply(state)
        self._replies[state.post_id] = live
        return live

    def get(self, post_id: str) -> LiveReply | None:
        """The live view of ``post_id``, if this replica renders it."""
        return self._replies.get(post_id)

    def end(self, post_id: str) -> None:
        """End the live view of ``post_id``: its subscribers' streams finish."""
        live = self._replies.pop(post_id, None)
        if live is not None:
            live.close()

    async def follow(self, live: LiveReply, user_id: str) -> AsyncIterator[dict[str, Any]]:
        """The replay then live payloads for one viewer, until the reply ends."""
        subscriber = _Subscriber(user_id)
        live.subscribers.append(subscriber)
        try:
            for payload in replay(live.state, user_id):
                yield payload
            if live.state.finished:
                return
            while True:
                item = await subscriber.queue.get()
                if item is None:
                    return
                yield item
        finally:
            if subscriber in live.subscribers:
                live.subscribers.remove(subscriber)
