"""The gateway's event-driven side, started and stopped with the HTTP server: keeps the agents and
their sockets current, answers posted events, and sweeps for replies dead replicas left."""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import web

from services.common.errors import DomainError
from services.common.mattermost import Post, WebSocketEvent
from services.gateway.conversations.bots import AgentDirectory, BotTokens, load_agents
from services.gateway.conversations.claims import ReplicaClaims
from services.gateway.conversations.listener import BotListeners, RecentPosts
from services.gateway.conversations.responder import Responder
from services.gateway.conversations.triggers import ReminderCandidate, Trigger, classify
from services.gateway.deps import GatewayDeps
from services.gateway.rendering.writer import ReplyWriter

logger = logging.getLogger(__name__)

# Wait before retrying a failed agents refresh.
RETRY_SECONDS = 1.0


class ConversationTriggers:
    """Everything that turns Mattermost events into answers, for one gateway replica."""

    def __init__(self, deps: GatewayDeps, writer: ReplyWriter) -> None:
        settings = deps.settings
        self.deps = deps
        self.replica_id = settings.replica_id or secrets.token_hex(8)
        self.directory = AgentDirectory(agents=[])
        self.tokens = BotTokens(deps.mattermost, f"agents-gateway {self.replica_id}")
        self.claims = ReplicaClaims(deps.backends, self.replica_id, settings.claim_lease_seconds)
        self.responder = Responder(deps, self.tokens, self.claims, writer, lambda: self.directory)
        self.listeners = BotListeners(
            settings.mattermost_url, self.tokens, self.on_event, max_backoff=settings.websocket_max_backoff_seconds
        )
        self.recent = RecentPosts()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        # The periodic refresh and one triggered by an agent route must not both open a socket
        # for the same new bot.
        self._refresh_lock = asyncio.Lock()

    async def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._refresh_loop(), name="agents-refresh"),
            asyncio.create_task(self._sweep_loop(), name="claims-sweep"),
        ]

    async def stop_listening(self) -> None:
        """Take no new work: the refresh and sweep loops end and the bot sockets close. Replies
        being rendered go on (the writer drains them)."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self.listeners.close()

    async def stop(self) -> None:
        await self.stop_listening()
        # What is left never reached its reply (or the drain marked it): the claims decide,
        # their leases expire and a live replica (or this one, restarted) takes them over.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.tokens.revoke_all()

    def spawn(self, coro: object, what: str) -> None:
        """Run ``coro`` in the background, held until done, its failure logged as ``what``."""

        async def guarded() -> None:
            try:
                await coro  # type: ignore[misc]
            except DomainError as err:
                logger.warning("%s failed: %s", what, err.message)
            except Exception:
                logger.exception("%s failed", what)

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def refresh(self) -> None:
        """Reload the agents and open or close bot sockets to match."""
        async with self._refresh_lock:
            self.directory = await load_agents(self.deps.backends)
            await self.listeners.sync({a.bot_user_id for a in self.directory.agents})

    async def agents_changed(self, listen_for: str = "", within: float = 3.0) -> None:
        """An agent was created, changed or deleted through this replica: reload now instead of
        at the next ``agents_refresh_seconds`` tick, and wait (at most ``within``) until the socket
        of bot ``listen_for`` is connected. Someone who creates an agent and DMs it right away is
        then answered, by this replica, instead of waiting up to that interval (30 s by default);
        the other replicas catch up on their own tick. Never fails the route that changed the agent.
        """
        if not self._loops:  # an HTTP-only replica (listen_for_posts off) keeps no sockets
            return
        try:
            await self.refresh()
        except DomainError as err:
            logger.warning("refreshing agents failed", extra={"error": err.message})
            return
        except Exception:
            logger.exception("refreshing agents failed")
            return
        if listen_for and not await self.listeners.wait_listening(listen_for, within):
            logger.warning("a new agent's bot is not listening yet", extra={"bot_user_id": listen_for})

    async def _refresh_loop(self) -> None:
        interval = self.deps.settings.agents_refresh_seconds
        while True:
            try:
                await self.refresh()
                delay = interval
            except DomainError as err:
                logger.warning("refreshing agents failed", extra={"error": err.message})
                # Typically the registry still starting (the gateway starts with it): retry soon
                # rather than leave existing agents deaf for a whole interval.
                delay = min(interval, RETRY_SECONDS)
            except Exception:
                logger.exception("refreshing agents failed")
                delay = min(interval, RETRY_SECONDS)
            await asyncio.sleep(delay)

    async def on_event(self, event: WebSocketEvent) -> None:
        """A ``posted`` event from any bot socket."""
        assert event.post is not None
        if not self.recent.first_time(event.post.id):
            return
        decision = classify(event.data, event.post, self.directory.agents)
        if isinstance(decision, Trigger):
            self.spawn(self.responder.answer(decision), "answering a post")
        elif isinstance(decision, ReminderCandidate):
            self.spawn(self.responder.remind(decision, self.directory.agents), "the mention reminder")

    async def trigger_for(self, post: Post) -> Trigger | ReminderCandidate | None:
        """Rebuild the decision for a post known only by id (a claim taken over before its reply)."""
        channel = await self.deps.mattermost.get_channel(post.channel_id)
        data = {"channel_type": channel.type, "channel_name": channel.name, "team_id": channel.team_id}
        return classify(data, post, self.directory.agents)

    async def sweep(self) -> int:
        """Take over every expired claim now; returns how many."""
        taken = 0
        while (claim := await self.claims.take_over_one()) is not None:
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
