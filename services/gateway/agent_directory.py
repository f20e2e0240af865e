"""The active agents as the gateway needs them (who each one's bot is), reloaded on a timer and
at once after an agent is written through this replica.

Every replica keeps one, whether or not it listens for posts: routes ask it which posts are an
agent's, the conversation side opens one WebSocket per bot it lists (``watch``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.errors import DomainError
from services.common.grpc_client import unary
from services.common.identity import SYSTEM, current_identity
from services.gateway.backends import Backends

logger = logging.getLogger(__name__)

# Wait before retrying a failed reload (typically the registry still starting with the gateway):
# soon, rather than leave the agents unknown for a whole interval.
RETRY_SECONDS = 1.0

Watcher = Callable[[list["AgentBot"]], Awaitable[None]]


@dataclass(frozen=True)
class AgentBot:
    """An agent as the gateway needs it: who its bot is."""

    agent_id: str
    username: str
    bot_user_id: str
    display_name: str = ""


class AgentDirectory:
    """The agents right now; ``agents`` is replaced whole on each reload."""

    def __init__(self, backends: Backends, refresh_seconds: float) -> None:
        self.backends = backends
        self.refresh_seconds = refresh_seconds
        self.agents: list[AgentBot] = []
        self._watchers: list[Watcher] = []
        # A timed reload and one after a write must not run their watchers side by side (two
        # sockets opened for one new bot).
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def by_bot(self, user_id: str) -> AgentBot | None:
        """The agent whose bot ``user_id`` is, if any."""
        return next((a for a in self.agents if a.bot_user_id == user_id), None)

    def by_id(self, agent_id: str) -> AgentBot | None:
        """The agent with id ``agent_id``, if it is listed."""
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    async def watch(self, watcher: Watcher) -> None:
        """Run ``watcher(agents)`` after every reload from now on, and once now."""
        async with self._lock:
            self._watchers.append(watcher)
            await watcher(self.agents)

    async def unwatch(self, watcher: Watcher) -> None:
        """Stop calling ``watcher``; returns once a reload running it has finished."""
        async with self._lock:
            self._watchers.remove(watcher)

    async def reload(self) -> None:
        """Every active agent with a bot, from the registry (asked as the cluster)."""
        async with self._lock:
            token = current_identity.set(SYSTEM)
            try:
                listed = await unary(self.backends.registry.ListAgents, registry_pb2.ListAgentsRequest())
            finally:
                current_identity.reset(token)
            self.agents = [
                AgentBot(agent_id=a.id, username=a.username, bot_user_id=a.bot_user_id, display_name=a.display_name)
                for a in listed.agents
                if a.bot_user_id and not a.delete_at
            ]
            for watcher in self._watchers:
                await watcher(self.agents)

    async def changed(self) -> None:
        """An agent was written through this replica: reload now rather than at the next tick, so
        its own routes and sockets see the change at once (other replicas catch up on their tick).
        Never fails the route that wrote it."""
        await self._reload_logged()

    async def _reload_logged(self) -> bool:
        """Reload; False (logged) when it failed."""
        try:
            await self.reload()
        except DomainError as err:
            logger.warning("reloading agents failed", extra={"error": err.message})
            return False
        except Exception:
            logger.exception("reloading agents failed")
            return False
        return True

    async def start(self) -> None:
        """Reload every ``refresh_seconds`` from now on, first at once (sooner again after a failure)."""
        if self._task is None:
            self._task = asyncio.create_task(self._reload_loop(), name="agents-reload")

    async def close(self) -> None:
        """Stop reloading."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _reload_loop(self) -> None:
        while True:
            reloaded = await self._reload_logged()
            await asyncio.sleep(self.refresh_seconds if reloaded else min(self.refresh_seconds, RETRY_SECONDS))
