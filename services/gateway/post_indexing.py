"""Realtime indexing: the posts the agent bots' WebSockets see are sent to agents.index.v1.Index
as they are created, edited and deleted.

A post reaches the socket of every bot in its channel, so each change is sent once per replica
(the index replaces a post's rows, so a second replica sending it again is harmless). Posts of
bots, system posts and posts in a DM with an agent are not sent, as the plugin indexes none of
them. Channels without an agent bot are not seen here: the reindex and catch-up
jobs index them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agents.index.v1 import index_pb2 as index_pb2

from services.common.errors import FailedPrecondition
from services.common.grpc_client import unary
from services.common.mattermost import Post, WebSocketEvent
from services.gateway.conversations.listener import RecentPosts
from services.gateway.deps import GatewayDeps

logger = logging.getLogger(__name__)

POST_EVENTS = frozenset({"posted", "post_edited", "post_deleted"})

Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class PostIndexer:
    """Turns post events into IndexPosts and DeletePosts calls, in the background."""

    def __init__(self, deps: GatewayDeps, spawn: Spawn, bot_ids: Callable[[], set[str]]) -> None:
        self.deps = deps
        self._spawn = spawn
        self._bot_ids = bot_ids
        self._recent = RecentPosts()

    async def on_event(self, event: WebSocketEvent) -> None:
        """Send the change of a post event (once per change) without waiting for the index."""
        post = event.post
        if event.event not in POST_EVENTS or post is None:
            return
        if self._recent.first_time(f"{event.event}:{post.id}:{post.update_at}:{post.delete_at}"):
            self._spawn(self._send(event.event, post, event.data), f"indexing post {post.id}")

    async def _send(self, kind: str, post: Post, data: dict[str, Any]) -> None:
        index = self.deps.backends.index
        try:
            if kind == "post_deleted" or post.delete_at:
                await unary(index.DeletePosts, index_pb2.DeletePostsRequest(post_ids=[post.id]))
                return
            message = await self._message(post, data)
            if message is not None:
                await unary(index.IndexPosts, index_pb2.IndexPostsRequest(posts=[message]))
        except FailedPrecondition as exc:
            # Search is off or waits for a reindex: nothing to keep current.
            logger.debug("post not indexed: %s", exc.message)

    async def _message(self, post: Post, data: dict[str, Any]) -> index_pb2.Post | None:
        """The post as the index takes it; None for a post in a DM with an agent, and for one that
        never has rows there (a bot's or a system post: an agent's reply streams as edits)."""
        bots = self._bot_ids()
        if post.type or post.from_bot or post.user_id in bots:
            return None
        team_id, channel_type, channel_name = data.get("team_id"), data.get("channel_type"), data.get("channel_name")
        if not isinstance(team_id, str) or not isinstance(channel_type, str) or not isinstance(channel_name, str):
            # Only ``posted`` carries the channel; an edit asks Mattermost for it.
            channel = await self.deps.mattermost.get_channel(post.channel_id)
            team_id, channel_type, channel_name = channel.team_id, channel.type, channel.name
        if channel_type == "D" and any(bot in channel_name.split("__") for bot in bots):
            return None
        return index_pb2.Post(
            id=post.id,
            team_id=team_id,
            channel_id=post.channel_id,
            user_id=post.user_id,
            message=post.message,
            create_at=post.create_at,
        )
