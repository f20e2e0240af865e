"""One Mattermost WebSocket per agent bot, and the hand-off of each ``posted`` event (and of every
event to an optional observer).

A post reaches every bot's socket that shares the channel (a thread with two agents, a mention of
one in another's DM), so this replica handles a post id once; across replicas the claim decides.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from services.common.errors import DomainError
from services.common.mattermost import MattermostWebSocket, WebSocketEvent
from services.gateway.bot_tokens import BotTokens

logger = logging.getLogger(__name__)

EventHandler = Callable[[WebSocketEvent], Awaitable[None]]


class RecentPosts:
    """Post ids seen lately (bounded), so each is handled once per replica."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, post_id: str) -> bool:
        """True the first time ``post_id`` is seen (lately), False after."""
        if post_id in self._seen:
            return False
        self._seen[post_id] = None
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return True


class BotListeners:
    """The open sockets, one task per bot, kept in step with the set of agents."""

    def __init__(
        self,
        base_url: str,
        tokens: BotTokens,
        on_event: EventHandler,
        *,
        max_backoff: float,
        on_any_event: EventHandler | None = None,
    ) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.on_event = on_event
        # Sees every event first (realtime indexing wants edits and deletes too); must not block.
        self.on_any_event = on_any_event
        self.max_backoff = max_backoff
        self._sockets: dict[str, MattermostWebSocket] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Set on a bot's first ``hello``: Mattermost has registered the socket, so the next post
        # in a channel of the bot reaches it.
        self._hello: dict[str, asyncio.Event] = {}

    @property
    def bot_ids(self) -> set[str]:
        """The bots whose socket task is running."""
        return {bot for bot, task in self._tasks.items() if not task.done()}

    async def wait_listening(self, bot_user_id: str, within: float) -> bool:
        """Wait until the bot's socket got its first ``hello`` (at most ``within`` seconds)."""
        hello = self._hello.get(bot_user_id)
        if hello is None:
            return False
        try:
            await asyncio.wait_for(hello.wait(), within)
        except TimeoutError:
            return False
        return True

    async def sync(self, bot_user_ids: set[str]) -> None:
        """Open sockets for new bots, close (and revoke the tokens of) bots no longer agents."""
        for bot in self.bot_ids - bot_user_ids:
            await self._stop(bot)
            await self.tokens.revoke(bot)
        for bot in bot_user_ids - self.bot_ids:
            try:
                token = await self.tokens.ensure(bot)
            except DomainError as err:
                logger.warning("no token for an agent bot", extra={"bot_user_id": bot, "error": err.message})
                continue
            socket = MattermostWebSocket(self.base_url, token, initial_backoff=0.2, max_backoff=self.max_backoff)
            self._sockets[bot] = socket
            self._hello[bot] = asyncio.Event()
            self._tasks[bot] = asyncio.create_task(self._listen(bot, socket), name=f"ws-{bot}")

    async def _listen(self, bot: str, socket: MattermostWebSocket) -> None:
        try:
            async for event in socket.events():
                if event.event == "hello" and (hello := self._hello.get(bot)) is not None:
                    hello.set()
                if self.on_any_event is not None:
                    await self.on_any_event(event)
                if event.event != "posted" or event.post is None:
                    continue
                try:
                    await self.on_event(event)
                except Exception:
                    logger.exception("handling a posted event failed", extra={"post_id": event.post.id})
        except DomainError as err:
            # The token was refused (revoked, bot disabled): the next sync makes a new one.
            logger.warning("agent bot socket refused", extra={"bot_user_id": bot, "error": err.message})
            await self.tokens.revoke(bot)

    async def _stop(self, bot: str) -> None:
        socket = self._sockets.pop(bot, None)
        task = self._tasks.pop(bot, None)
        self._hello.pop(bot, None)
        if socket is not None:
            await socket.aclose()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Close every socket and end its task."""
        for bot in list(self._tasks):
            await self._stop(bot)
