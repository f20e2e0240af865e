"""Reply posts written as an agent's bot, for the HTTP routes and the responder alike: the bot's
client, a new reply's props, a reply started in the caller's DM, a turn launched from a route or
written into its post, and the live view of a post being written.

It needs no socket: a replica that serves HTTP only (``listen_for_posts`` off) writes replies the
same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient, Post
from services.common.plugin_config import PluginConfigWatcher
from services.gateway.bot_tokens import BotTokens
from services.gateway.rendering.reply import POST_TYPE, ReplyState, base_props
from services.gateway.rendering.writer import ReplyWriter

logger = logging.getLogger(__name__)

Events = AsyncIterator[llm_pb2.ConversationEvent]


@dataclass(frozen=True)
class FileUpload:
    """A file to attach to a new reply post."""

    filename: str
    content: bytes
    mime_type: str


@dataclass(frozen=True)
class Question:
    """A question posted into the DM before the reply that answers it in its thread."""

    message: str
    props: Mapping[str, Any]


@dataclass(frozen=True)
class Reply:
    """A reply post, the bot client that writes it, and what it shows so far."""

    poster: MattermostClient
    state: ReplyState
    channel_id: str
    # Created for this turn: a turn refused before its first event deletes it.
    new: bool = False
    file_ids: tuple[str, ...] = ()
    # The question post the reply answers in its thread (``start_in_dm`` with a question).
    question_id: str = ""

    @property
    def post_id(self) -> str:
        """The reply post's id."""
        return self.state.post_id


class ReplyService:
    """Writes replies as the agents' bots, each bot with its current token."""

    def __init__(
        self,
        mattermost_url: str,
        http: aiohttp.ClientSession,
        tokens: BotTokens,
        plugin_config: PluginConfigWatcher,
        writer: ReplyWriter,
    ) -> None:
        self.mattermost_url = mattermost_url
        self.http = http
        self.tokens = tokens
        self.plugin_config = plugin_config
        self.writer = writer
        self._clients: dict[str, tuple[str, MattermostClient]] = {}  # bot → (token, client)
        # Turns launched by routes, held so they are not garbage-collected mid-turn.
        self._launched: set[asyncio.Task[None]] = set()

    async def poster(self, bot_user_id: str) -> MattermostClient:
        """A client that writes as the bot with its current token: the bot's token changes when it
        was revoked (a refused socket, or the bot leaving and coming back as another agent's)."""
        token = await self.tokens.ensure(bot_user_id)
        cached = self._clients.get(bot_user_id)
        if cached is None or cached[0] != token:
            cached = (token, MattermostClient(self.mattermost_url, token, session=self.http))
            self._clients[bot_user_id] = cached
        return cached[1]

    def props(self, *, requester_id: str, responding_to: str = "") -> dict[str, Any]:
        """The props a new reply post is created with. Links stay unsafe until the plugin
        configuration (``allowUnsafeLinks``) has arrived."""
        allow = self.plugin_config.ready and self.plugin_config.current.config.allow_unsafe_links
        return base_props(
            conversation_id="", responding_to=responding_to, requester_id=requester_id, allow_unsafe_links=allow
        )

    async def start_in_dm(
        self,
        requester_id: str,
        bot_user_id: str,
        *,
        props: Mapping[str, Any] | None = None,
        upload: FileUpload | None = None,
        question: Question | None = None,
    ) -> Reply:
        """A new, empty reply of the bot in its DM with ``requester_id`` (the DM is created when
        there is none yet), carrying ``props`` besides the usual ones and ``upload`` attached;
        with a ``question``, that is posted first and the reply goes into its thread."""
        poster = await self.poster(bot_user_id)
        dm = await poster.get_or_create_direct_channel(requester_id, bot_user_id)
        root_id = ""
        if question is not None:
            # Posted by the bot: Mattermost's REST API posts only as the token's own user, and the
            # gateway holds no token of the requester's (the plugin posts it as the user).
            root_id = (await poster.create_post(dm.id, question.message, props=dict(question.props))).id
        reply_props = {**self.props(requester_id=requester_id, responding_to=root_id), **(props or {})}
        file_ids: list[str] = []
        if upload is not None:
            uploaded = await poster.upload_file(dm.id, upload.filename, upload.content, upload.mime_type)
            file_ids.append(uploaded.id)
        post = await poster.create_post(
            dm.id, "", root_id=root_id, props=reply_props, type=POST_TYPE, file_ids=file_ids
        )
        state = ReplyState(post_id=post.id, requester_id=requester_id, props=dict(reply_props))
        return Reply(poster, state, dm.id, new=True, file_ids=tuple(file_ids), question_id=root_id)

    async def start_in_thread(self, post: Post, bot_user_id: str) -> Reply:
        """A new, empty reply of the bot to the user's ``post``, in the post's thread."""
        poster = await self.poster(bot_user_id)
        props = self.props(requester_id=post.user_id, responding_to=post.id)
        created = await poster.create_post(
            post.channel_id, "", root_id=post.root_id or post.id, props=props, type=POST_TYPE
        )
        state = ReplyState(post_id=created.id, requester_id=post.user_id, props=dict(props))
        return Reply(poster, state, post.channel_id, new=True)

    async def of_post(self, post: Post) -> Reply:
        """An existing reply post, to continue or rewrite as the bot that wrote it."""
        return Reply(await self.poster(post.user_id), ReplyState.of_post(post), post.channel_id)

    async def write(self, reply: Reply, events: Events, *, resumable: bool = False) -> ReplyState:
        """Write the turn's ``events`` into the reply until the turn ends (``ReplyWriter.render``)."""
        return await self.writer.render(reply.poster, reply.state, events, resumable=resumable)

    async def launch(self, reply: Reply, events: Events) -> None:
        """Start a turn from a route: raise its error if it fails before its first event (so a
        refusal becomes the route's HTTP error, and a new reply is deleted rather than left
        streaming with nothing writing it); otherwise write the rest in the background."""
        try:
            first = await anext(events)
        except StopAsyncIteration:
            first = None
        except BaseException:
            if reply.new:
                await self._discard(reply)
            raise

        async def rest() -> Events:
            if first is not None:
                yield first
                async for event in events:
                    yield event

        async def write() -> None:
            try:
                await self.write(reply, rest())
            except DomainError as err:
                logger.warning("rendering a turn failed", extra={"post_id": reply.post_id, "error": err.message})
            except Exception:
                logger.exception("rendering a turn failed", extra={"post_id": reply.post_id})

        task = asyncio.create_task(write())
        self._launched.add(task)
        task.add_done_callback(self._launched.discard)

    def follow(self, post_id: str, viewer: str) -> AsyncIterator[dict[str, Any]] | None:
        """The ``postupdate`` payloads of a reply this replica is writing, for ``viewer``: a replay
        of what it shows, then live until it ends. None when this replica is not writing it."""
        live = self.writer.live.get(post_id)
        return None if live is None else self.writer.live.follow(live, viewer)

    async def drain(self, relay_for: float, mark_within: float) -> None:
        """Shutdown: let the replies being written finish, then mark the rest (``ReplyWriter.drain``)."""
        await self.writer.drain(relay_for, mark_within)

    async def _discard(self, reply: Reply) -> None:
        for post_id in filter(None, (reply.post_id, reply.question_id)):
            try:
                await reply.poster.delete_post(post_id)
            except DomainError as err:
                logger.warning(
                    "deleting the posts of a refused turn failed", extra={"post_id": post_id, "error": err.message}
                )
