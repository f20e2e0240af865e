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
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.llm_conversation_support import World as ConversationWorld
from tests.integration.llm_conversation_support import started_world
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

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
class Workers:
    c: ConversationWorld  # the cluster, its fakes and one saved service
    user: FakeUser
    streams: int = 0  # StreamComplete calls answered OK so far

    @property
    def h(self) -> ClusterHarness:
        return self.c.h


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[Workers]:
    async with started_world(postgres, process_env=PROCESS_ENV, start_within=START_WITHIN) as c:
        yield Workers(c, c.mm.add_user("workers-user"))


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


async def stream(world: Workers, **response: object) -> list[llm_pb2.StreamEvent]:
    """One StreamComplete on a new connection, read to its end."""
    world.c.openai.enqueue(FakeResponse.text("Hi there", **response))
    message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="Hello")])
    request = llm_pb2.CompletionRequest(service_id=world.c.service_id, messages=[message])
    async with fresh_channel(world.h) as channel:
        call = llm_pb2_grpc.LLMStub(channel).StreamComplete(
            llm_pb2.StreamCompleteRequest(request=request), metadata=world.h.metadata(), timeout=20
        )
        events = [event async for message in call for event in message.events]
    world.streams += 1
    assert events[-1].WhichOneof("event") == "done"
    return events


async def gateway_get(world: Workers, path: str) -> int:
    """GET a plugin route as the test user on a new connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        headers = {"Authorization": f"Bearer {world.user.token}"}
        async with http.get(f"{world.h.gateway_url}{PLUGIN}{path}", headers=headers) as resp:
            return resp.status


async def scrape(world: Workers, service: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
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


async def test_both_llm_workers_serve_the_port_and_the_parent_sums_their_metrics(world: Workers) -> None:
    h = world.h
    pids = set((await poll(lambda: len(workers(h, "llm")) == 2 and workers(h, "llm"))).values())

    async def both_served() -> bool:
        await stream(world)
        return pids_logging(h, "llm", STREAM_METHOD) == pids

    await poll(both_served, within=30, message=lambda: f"served by {pids_logging(h, 'llm', STREAM_METHOD)} of {pids}")
    assert handled_streams(await scrape(world, "llm")) == world.streams


async def test_both_gateway_workers_serve_the_port(world: Workers) -> None:
    h = world.h
    pids = set((await poll(lambda: len(workers(h, "gateway")) == 2 and workers(h, "gateway"))).values())

    async def both_served() -> bool:
        assert await gateway_get(world, "/ai_bots") == 200
        return pids_logging(h, "gateway", f"GET {PLUGIN}/ai_bots") == pids

    await poll(both_served, within=30, message=lambda: f"served by {pids_logging(h, 'gateway', 'ai_bots')} of {pids}")
    samples = await scrape(world, "gateway")
    assert sum(v for (name, _), v in samples.items() if name == "agents_http_requests_total") >= 2


@pytest.mark.parametrize("service", ["llm", "gateway"])
async def test_a_killed_worker_is_restarted_while_the_other_keeps_serving(world: Workers, service: str) -> None:
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


async def test_an_attach_reaching_the_other_llm_worker_is_relayed_to_the_one_running_the_turn(
    world: Workers,
) -> None:
    c, h = world.c, world.h
    reader = c.mm.add_user("workers-reader")
    agent = await c.agent("workersbot")
    # Long enough for attaches on new connections to reach both workers while it runs.
    c.openai.enqueue(FakeResponse.text("word " * 40, tokens=40, token_delay=0.3), FakeResponse.text("Title"))
    request, _ = c.dm(reader, agent, "tell me slowly")
    async with fresh_channel(h) as channel:
        respond = llm_pb2_grpc.ConversationsStub(channel).Respond(request, metadata=c.md(reader))
        assert (await respond.read()).event.control == "start"
        (runner,) = pids_logging(h, "llm", "/agents.llm.v1.Conversations/Respond")
        (other,) = set(workers(h, "llm").values()) - {runner}

        async def attached_through_the_other() -> bool:
            async with fresh_channel(h) as attach_channel:
                attach = llm_pb2_grpc.ConversationsStub(attach_channel).Attach(
                    llm_pb2.AttachRequest(post_id=request.response_post_id), metadata=c.md(reader)
                )
                assert (await attach.read()).event.control == "start"
                attach.cancel()
            return other in pids_logging(h, "llm", "/agents.llm.v1.Conversations/Attach")

        await poll(attached_through_the_other, within=10)
        respond.cancel()


async def test_sigterm_drains_an_in_flight_stream_on_every_worker_before_the_parent_exits(world: Workers) -> None:
    h = world.h
    assert h.cluster is not None
    pids = set(workers(h, "llm").values())
    world.c.openai.enqueue(FakeResponse.text(tokens=8, token_delay=0.15))
    message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="Hello")])
    request = llm_pb2.CompletionRequest(service_id=world.c.service_id, messages=[message])
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
