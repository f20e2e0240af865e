"""The bridge's agent resolution: reused within its TTL, forgotten after it or on invalidation,
misses never reused, concurrent misses sharing one registry call. Time is a stepped clock."""

from __future__ import annotations

import asyncio

import pytest
from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.errors import NotFound
from services.gateway.bridge.agents import BridgeAgents

TTL = 5.0


class FakeRegistry:
    """Agents by username, counting lookups; ``gate`` holds lookups until set."""

    def __init__(self) -> None:
        self.agents: dict[str, registry_pb2.Agent] = {}
        self.lookups = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, name: str) -> registry_pb2.Agent:
        self.lookups += 1
        await self.gate.wait()
        if name not in self.agents:
            raise NotFound(f"agent {name} not found")
        return self.agents[name]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(ttl: float = TTL) -> tuple[FakeRegistry, Clock, BridgeAgents]:
    registry, clock = FakeRegistry(), Clock()
    registry.agents["helper"] = registry_pb2.Agent(id="a1", username="helper", service_id="s1")
    return registry, clock, BridgeAgents(registry.fetch, ttl, clock=clock)


async def test_an_agent_resolved_twice_within_the_ttl_asks_the_registry_once() -> None:
    registry, clock, agents = setup()
    first = await agents.resolve("helper")
    clock.now += TTL - 0.1
    again = await agents.resolve("helper")
    assert first.id == again.id == "a1" and registry.lookups == 1


async def test_a_deleted_agent_stops_being_served_once_the_ttl_expires() -> None:
    registry, clock, agents = setup()
    await agents.resolve("helper")
    del registry.agents["helper"]
    assert (await agents.resolve("helper")).id == "a1"  # within the TTL: still the cached agent
    clock.now += TTL
    with pytest.raises(NotFound):
        await agents.resolve("helper")


async def test_an_edited_agent_is_seen_after_the_ttl() -> None:
    registry, clock, agents = setup()
    await agents.resolve("helper")
    registry.agents["helper"] = registry_pb2.Agent(id="a1", username="helper", service_id="s2")
    clock.now += TTL
    assert (await agents.resolve("helper")).service_id == "s2"


async def test_invalidation_forgets_every_agent_at_once() -> None:
    registry, _, agents = setup()
    await agents.resolve("helper")
    registry.agents["helper"] = registry_pb2.Agent(id="a1", username="helper", service_id="s2")
    agents.invalidate()
    assert (await agents.resolve("helper")).service_id == "s2" and registry.lookups == 2


async def test_an_unknown_agent_is_not_remembered_so_a_new_one_is_usable_at_once() -> None:
    registry, _, agents = setup()
    with pytest.raises(NotFound):
        await agents.resolve("newbot")
    registry.agents["newbot"] = registry_pb2.Agent(id="a2", username="newbot")
    assert (await agents.resolve("newbot")).id == "a2"


async def test_concurrent_misses_for_one_agent_share_one_registry_call() -> None:
    registry, _, agents = setup()
    registry.gate.clear()
    waiters = [asyncio.ensure_future(agents.resolve("helper")) for _ in range(10)]
    await asyncio.sleep(0)  # let every waiter reach the shared lookup
    registry.gate.set()
    assert {a.id for a in await asyncio.gather(*waiters)} == {"a1"} and registry.lookups == 1


async def test_a_lookup_started_before_an_invalidation_does_not_repopulate_the_cache() -> None:
    registry, _, agents = setup()
    registry.gate.clear()
    stale = asyncio.ensure_future(agents.resolve("helper"))
    await asyncio.sleep(0)
    agents.invalidate()  # e.g. the agent was edited while the lookup was in flight
    registry.gate.set()
    await stale
    await agents.resolve("helper")
    assert registry.lookups == 2


async def test_one_cancelled_waiter_does_not_fail_the_others() -> None:
    registry, _, agents = setup()
    registry.gate.clear()
    leaving = asyncio.ensure_future(agents.resolve("helper"))
    staying = asyncio.ensure_future(agents.resolve("helper"))
    await asyncio.sleep(0)
    leaving.cancel()
    registry.gate.set()
    assert (await staying).id == "a1"


async def test_a_zero_ttl_asks_the_registry_every_time() -> None:
    registry, _, agents = setup(ttl=0)
    await agents.resolve("helper")
    await agents.resolve("helper")
    assert registry.lookups == 2
