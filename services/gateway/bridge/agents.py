"""The bridge's agent resolution (a plugin's ``{agent}`` → the registry's agent), reused briefly.

Every bridge completion names its agent, and asking the registry each time put a registry (and
PostgreSQL) round trip in front of every first token. The registry NOTIFYs agent writes only to
index replicas, so the gateway cannot hear them; instead an entry lives ``ttl`` seconds (a few),
and the whole directory is forgotten when the plugin configuration changes (services may have
moved) or an agent is written through this gateway. So a deleted or edited agent is served for at
most ``ttl`` seconds by another replica, and never by the one that made the change.

What is cached is only *which* agent a name means: it is fetched as the cluster (no user
identity), so it does not depend on the caller. Access decisions are never cached here — the
bridge asks ``CheckAgentAccess`` on every request that names a user. Misses are not cached
either, so a new agent is usable at once. Concurrent misses for one name share one fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.errors import NotFound
from services.common.grpc_client import unary
from services.common.ttl_cache import TtlCache

AgentFetch = Callable[[str], Awaitable[registry_pb2.Agent]]


def registry_lookup(registry: registry_pb2_grpc.RegistryAsyncStub) -> AgentFetch:
    """The registry's answer to a plugin's ``{agent}``: by username, else by id or bot user id
    (plugins hold any of them)."""

    async def fetch(name: str) -> registry_pb2.Agent:
        for selector in ("username", "id", "bot_user_id"):
            try:
                reply = await unary(registry.GetAgent, registry_pb2.GetAgentRequest(**{selector: name}))
                return reply.agent
            except NotFound:
                continue
        raise NotFound(f"agent {name} not found")

    return fetch


class BridgeAgents:
    """Name → agent for the bridge, each entry trusted for ``ttl`` seconds."""

    def __init__(
        self, fetch: AgentFetch, ttl: float, *, max_entries: int = 1_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``fetch(name)`` asks the registry and raises ``NotFound``; ``ttl`` 0 disables reuse."""
        self._fetch = fetch
        self._cache: TtlCache[str, registry_pb2.Agent] = TtlCache(ttl, max_entries, clock=clock)
        self._pending: dict[str, asyncio.Future[registry_pb2.Agent]] = {}
        # Bumped by invalidate(): a fetch that started before it must not repopulate the cache.
        self._generation = 0

    async def resolve(self, name: str) -> registry_pb2.Agent:
        """The agent ``name`` means (username, id or bot user id); ``NotFound`` when none."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        pending = self._pending.get(name)
        if pending is None:
            pending = asyncio.ensure_future(self._load(name, self._generation))
            self._pending[name] = pending
            pending.add_done_callback(lambda done: self._forget(name, done))
        # shield: one waiter's cancellation (its client went away) must not fail the others.
        return await asyncio.shield(pending)

    def invalidate(self) -> None:
        """Forget every agent: the next request for each asks the registry again."""
        self._generation += 1
        self._cache.clear()
        self._pending.clear()

    async def _load(self, name: str, generation: int) -> registry_pb2.Agent:
        agent = await self._fetch(name)
        if generation == self._generation:
            self._cache.put(name, agent)
        return agent

    def _forget(self, name: str, done: asyncio.Future[registry_pb2.Agent]) -> None:
        if self._pending.get(name) is done:
            del self._pending[name]
        if not done.cancelled():
            done.exception()  # retrieved, so a failure nobody awaited any more is not logged as lost
