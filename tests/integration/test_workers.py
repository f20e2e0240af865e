"""Several worker processes on one port (services/common/workers.py) through real processes: the
llm and the gateway each run two workers under a parent. Both workers serve (each log line names
its pid), the parent's metrics add theirs up, a killed worker is restarted while the other keeps
serving, and SIGTERM drains an in-flight stream before the parent exits."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import grpc
import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.common.identity import MANAGE_SYSTEM, Identity
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Identity(user_id="admin0000000000000000000001", permissions=frozenset({MANAGE_SYSTEM}))
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
# DEBUG: each worker logs every gRPC call and HTTP request, with its pid.
PROCESS_ENV = {
    "llm": {"AGENTS_LLM_WORKERS": "2", "AGENTS_LLM_LOG_LEVEL": "DEBUG"},
    "gateway": {"AGENTS_GATEWAY_WORKERS": "2", "AGENTS_GATEWAY_LOG_LEVEL": "DEBUG"},
}
STREAM_METHOD = "/agents.llm.v1.LLM/StreamComplete"
# Workers double the processes that start at once on a small test machine.
START_WITHIN = 180
# What a worker logs once it serves.
READY = {"llm": "serving agents.llm.v1.LLM", "gateway": "HTTP listening on"}


@dataclass
class World:
    h: ClusterHarness
    fake: FakeOpenAI
    service_id: str
    user: FakeUser
    streams: int = 0  # StreamComplete calls answered OK so far


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as fake, ClusterHarness(postgres, process_env=PROCESS_ENV, start_within=START_WITHIN) as h:
        service = registry_pb2.ServiceConfig(
            name="fake-openai",
            type="openaicompatible",
            api_key=fake.api_key,
            api_url=fake.base_url,
            default_model="gpt-4o",
        )
        async with h.channel("index") as channel:
            reply = await registry_pb2_grpc.RegistryStub(channel).CreateService(
                registry_pb2.CreateServiceRequest(service=service), metadata=h.metadata(ADMIN), timeout=10
            )
        yield World(h, fake, reply.service.id, h.mattermost.add_user("workers-user"))


def workers(h: ClusterHarness, service: str) -> dict[int, int]:
    """Worker index → pid of its latest start, from the parent's log."""
    found: dict[int, int] = {}
    for line in h.logs.get(service, []):
        if match := STARTED.search(line):
            found[int(match[1])] = int(match[2])
    return found


def pids_logging(h: ClusterHarness, service: str, text: str) -> set[int]:
    """The pids of the processes that logged a line containing ``text``."""
    pids = set()
    for line in h.logs.get(service, []):
        if text in line and line.startswith("{"):
            pids.add(json.loads(line)["pid"])
    return pids


def fresh_channel(h: ClusterHarness) -> grpc.aio.Channel:
    """A channel with a connection of its own: the kernel picks the worker per connection."""
    assert h.cluster is not None
    return grpc.aio.insecure_channel(h.cluster.address("llm"), options=[("grpc.use_local_subchannel_pool", 1)])


async def stream(world: World, **response: object) -> list[llm_pb2.StreamEvent]:
    """One StreamComplete on a new connection, read to its end."""
    world.fake.enqueue(FakeResponse.text("Hi there", **response))
    message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="Hello")])
    request = llm_pb2.CompletionRequest(service_id=world.service_id, messages=[message])
    async with fresh_channel(world.h) as channel:
        call = llm_pb2_grpc.LLMStub(channel).StreamComplete(
            llm_pb2.StreamCompleteRequest(request=request), metadata=world.h.metadata(), timeout=20
        )
        events = [event async for message in call for event in message.events]
    world.streams += 1
    assert events[-1].WhichOneof("event") == "done"
    return events


async def gateway_get(world: World, path: str) -> int:
    """GET a plugin route as the test user on a new connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        headers = {"Authorization": f"Bearer {world.user.token}"}
        async with http.get(f"{world.h.gateway_url}{PLUGIN}{path}", headers=headers) as resp:
            return resp.status


async def scrape(world: World, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert world.h.cluster is not None and world.h.http is not None
    async with world.h.http.get(world.h.cluster.metrics_url(service)) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def handled_streams(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "agents_grpc_server_handled_total"
        and ("grpc_method", "StreamComplete") in labels
        and ("grpc_code", "OK") in labels
    )


async def test_both_llm_workers_serve_the_port_and_the_parent_sums_their_metrics(world: World) -> None:
    h = world.h
    pids = set((await poll(lambda: len(workers(h, "llm")) == 2 and workers(h, "llm"))).values())

    async def both_served() -> bool:
        await stream(world)
        return pids_logging(h, "llm", STREAM_METHOD) == pids

    await poll(both_served, within=30, message=lambda: f"served by {pids_logging(h, 'llm', STREAM_METHOD)} of {pids}")
    assert handled_streams(await scrape(world, "llm")) == world.streams


async def test_both_gateway_workers_serve_the_port(world: World) -> None:
    h = world.h
    pids = set((await poll(lambda: len(workers(h, "gateway")) == 2 and workers(h, "gateway"))).values())

    async def both_served() -> bool:
        assert await gateway_get(world, "/ai_bots") == 200
        return pids_logging(h, "gateway", f"GET {PLUGIN}/ai_bots") == pids

    await poll(both_served, within=30, message=lambda: f"served by {pids_logging(h, 'gateway', 'ai_bots')} of {pids}")
    samples = await scrape(world, "gateway")
    assert sum(v for (name, _), v in samples.items() if name == "agents_http_requests_total") >= 2


@pytest.mark.parametrize("service", ["llm", "gateway"])
async def test_a_killed_worker_is_restarted_while_the_other_keeps_serving(world: World, service: str) -> None:
    h = world.h
    killed = workers(h, service)[1]
    os.kill(killed, signal.SIGKILL)
    # Once the parent saw it die (its socket closed), only the other worker listens until the
    # parent restarts this one.
    await poll(lambda: any(f"worker 1 (pid {killed}) exited" in line for line in h.logs[service]))
    if service == "llm":
        await stream(world)
    else:
        assert await gateway_get(world, "/ai_bots") == 200
    restarted = await poll(lambda: workers(h, service)[1] != killed and workers(h, service)[1], within=30)
    await poll(lambda: restarted in pids_logging(h, service, READY[service]), within=START_WITHIN)
    assert h.cluster is not None and h.cluster.processes[service].proc.returncode is None
    if service == "llm":  # the dead worker's counts stay in the sum
        assert handled_streams(await scrape(world, "llm")) == world.streams


async def test_sigterm_drains_an_in_flight_stream_on_every_worker_before_the_parent_exits(world: World) -> None:
    h = world.h
    assert h.cluster is not None
    pids = set(workers(h, "llm").values())
    world.fake.enqueue(FakeResponse.text(tokens=8, token_delay=0.15))
    message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="Hello")])
    request = llm_pb2.CompletionRequest(service_id=world.service_id, messages=[message])
    parent = h.cluster.processes["llm"].proc
    try:
        async with fresh_channel(h) as channel:
            call = llm_pb2_grpc.LLMStub(channel).StreamComplete(
                llm_pb2.StreamCompleteRequest(request=request), metadata=h.metadata(), timeout=20
            )
            events = list((await call.read()).events)
            parent.send_signal(signal.SIGTERM)
            while (reply := await call.read()) is not grpc.aio.EOF:
                events.extend(reply.events)
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[-1] == "done" and kinds.count("text_delta") == 8
        assert await asyncio.wait_for(parent.wait(), 20) == 0
        for pid in pids:  # the parent exits once its workers have
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        await h.cluster.stop_service("llm")
        await h.cluster.start_service("llm", h.cluster.replica_environment("llm", "llm"), module="llm")
        await h.cluster.wait_healthy(names=("llm",), timeout=60)
