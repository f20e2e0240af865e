"""The gateway's event-driven side, started and stopped with the HTTP server: one socket per agent
bot the directory lists, answers to posted events, realtime indexing of the posts the sockets see,
and sweeps for replies dead replicas left."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web

from services.common.errors import DomainError
from services.common.mattermost import Post, WebSocketEvent
from services.gateway.agent_directory import AgentBot
from services.gateway.conversations.claims import ReplicaClaims
from services.gateway.conversations.listener import BotListeners, RecentPosts
from services.gateway.conversations.responder import Responder
from services.gateway.conversations.triggers import ReminderCandidate, Trigger, classify
from services.gateway.deps import GatewayDeps
from services.gateway.post_indexing import PostIndexer

logger = logging.getLogger(__name__)


class ConversationTriggers:
    """Everything that turns Mattermost events into answers, for one gateway replica."""

    def __init__(self, deps: GatewayDeps) -> None:
        settings = deps.settings
        self.deps = deps
        self.claims = ReplicaClaims(deps.backends, deps.replica_id, settings.claim_lease_seconds)
        self.responder = Responder(deps, self.claims)
        self.indexer = PostIndexer(deps, self.spawn, lambda: self.listeners.bot_ids)
        self.listeners = BotListeners(
            settings.mattermost_url,
            deps.bot_tokens,
            self.on_event,
            max_backoff=settings.websocket_max_backoff_seconds,
            on_any_event=self.indexer.on_event,
        )
        self.recent = RecentPosts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeping: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """True between ``start`` and ``stop_listening``."""
        return self._sweeping is not None

    async def start(self) -> None:
        """Listen: a socket per agent bot from now on (kept in step with the directory), and sweeps."""
        self._sweeping = asyncio.create_task(self._sweep_loop(), name="claims-sweep")
        await self.deps.directory.watch(self._sync_sockets)

    async def stop_listening(self) -> None:
        """Take no new work: the sweep loop ends and the bot sockets close. Replies being
        rendered go on (the reply service drains them)."""
        if self._sweeping is None:
            return
        await self.deps.directory.unwatch(self._sync_sockets)
        self._sweeping.cancel()
        await asyncio.gather(self._sweeping, return_exceptions=True)
        self._sweeping = None
        await self.listeners.close()

    async def stop(self) -> None:
        """Stop listening, then cancel the answers still running: their claims expire and a live
        replica takes them over."""
        await self.stop_listening()
        # What is left never reached its reply (or the drain marked it): the claims decide,
        # their leases expire and a live replica (or this one, restarted) takes them over.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: Awaitable[None], what: str) -> None:
        """Run ``coro`` in the background, held until done, its failure logged as ``what``."""

        async def guarded() -> None:
            try:
                await coro
            except DomainError as err:
                logger.warning("%s failed: %s", what, err.message)
            except Exception:
                logger.exception("%s failed", what)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync_sockets(self, agents: list[AgentBot]) -> None:
        await self.listeners.sync({a.bot_user_id for a in agents})

    async def wait_listening(self, bot_user_id: str, within: float = 3.0) -> None:
        """After an agent was created through this replica (and the directory reloaded): wait, at
        most ``within``, until the socket of its bot is connected. Someone who creates an agent and
        DMs it right away is then answered, by this replica, instead of waiting for the next
        reload (``agents_refresh_seconds``, 30 s by default). Never fails the route."""
        if self.listening and not await self.listeners.wait_listening(bot_user_id, within):
            logger.warning("a new agent's bot is not listening yet", extra={"bot_user_id": bot_user_id})

    async def on_event(self, event: WebSocketEvent) -> None:
        """A ``posted`` event from any bot socket."""
        assert event.post is not None
        if not self.recent.first_time(event.post.id):
            return
        agents = self.deps.directory.agents
        decision = classify(event.data, event.post, agents)
        if isinstance(decision, Trigger):
            self.spawn(self.responder.answer(decision), "answering a post")
        elif isinstance(decision, ReminderCandidate):
            self.spawn(self.responder.remind(decision, agents), "the mention reminder")

    async def trigger_for(self, post: Post) -> Trigger | ReminderCandidate | None:
        """Rebuild the decision for a post known only by id (a claim taken over before its reply)."""
        channel = await self.deps.mattermost.get_channel(post.channel_id)
        data = {"channel_type": channel.type, "channel_name": channel.name, "team_id": channel.team_id}
        return classify(data, post, self.deps.directory.agents)

    async def sweep(self) -> int:
        """Take over every expired claim now; returns how many."""
        taken = 0
        while (claim := await self.claims.take_over_one()) is not None:
            if self.claims.holds(claim.post_id):
                # This replica's own claim, still being answered here: its renewals came too late
                # (a busy llm or database), or its ClaimPost committed after its deadline and is
                # being tried again. Taking it over renewed it; a second answer would write the
                # reply twice.
                logger.warning("a claim expired while this replica answered it", extra={"post_id": claim.post_id})
                continue
            taken += 1
            self.spawn(self.responder.resume(claim, self.trigger_for), "resuming a reply")
        return taken

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except DomainError as err:
                logger.warning("sweeping claims failed", extra={"error": err.message})
            await asyncio.sleep(self.deps.settings.claim_sweep_seconds)


# Where routes find this replica's conversation side (``request.config_dict[TRIGGERS]``).
TRIGGERS = web.AppKey("conversation_triggers", ConversationTriggers)
