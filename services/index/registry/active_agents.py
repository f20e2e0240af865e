"""The active agents, kept in process for the hot paths: GET /ai_bots, the bridge, and the agent
lookup and access check of every answer.

Correct across replicas because every agent write through the registry NOTIFYs inside its
transaction and every replica's ChangeListener drops the list when it hears one; the replica that
wrote also drops it right after its commit, so a client never reads its own write stale. While
the listener is disconnected nothing is cached (a missed notification cannot be detected), and
an entry older than ``max_age`` is re-read anyway, which bounds how long a row changed with
plain SQL, behind the registry's back, can go unseen.
"""

from __future__ import annotations

import time

from services.index.registry.agents import Agent
from services.index.registry.change_listener import ChangeListener
from services.index.registry.store import AGENTS_CHANNEL, AgentStore


class ActiveAgents:
    """The in-process list of active agents, dropped on every agent write any replica commits."""

    def __init__(self, store: AgentStore, listener: ChangeListener, *, max_age: float) -> None:
        self._store = store
        self._max_age = max_age
        self._agents: list[Agent] | None = None
        self._loaded_at = 0.0
        # Bumped by every invalidation: a read that started before one must not be cached.
        self._generation = 0
        self._trusted = False
        listener.watch(AGENTS_CHANNEL, self._on_change, self._on_lost)
        store.on_write(self.invalidate)

    async def _on_change(self) -> None:
        # Also called right after (re)connecting: from here on, no change can go unheard.
        self._trusted = True
        self.invalidate()

    def _on_lost(self) -> None:
        self._trusted = False
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the list; the next read goes to the database."""
        self._generation += 1
        self._agents = None

    async def list(self) -> list[Agent]:
        """Active agents, oldest first (the store's order); callers must not mutate the list."""
        agents = self._agents
        if agents is not None and time.monotonic() - self._loaded_at < self._max_age:
            return agents
        generation = self._generation
        agents = await self._store.list_active()
        if self._trusted and self._max_age > 0 and generation == self._generation:
            self._agents, self._loaded_at = agents, time.monotonic()
        return agents

    async def get(self, *, id: str = "", username: str = "", bot_user_id: str = "") -> Agent | None:
        """The active agent with the first non-empty key given, or None (as ``AgentStore.get``)."""
        if not self._trusted or self._max_age <= 0:
            # Nothing would be kept (the listener is down, or caching is off): read the one row,
            # not the whole list.
            return await self._store.get(id=id, username=username, bot_user_id=bot_user_id)
        key, value = next((k, v) for k, v in (("id", id), ("username", username), ("bot_user_id", bot_user_id)) if v)
        return next((a for a in await self.list() if getattr(a, key) == value), None)
