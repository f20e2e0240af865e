"""Tracing switched live from the plugin configuration, through real processes: the cluster
starts with tracing off (no span is exported), the admin saves ``telemetryOutput: otlp`` and an
``openTelemetryEndpoint`` with PUT /admin/config, and without a restart one DM turn with a tool
call reaches the OTLP gRPC receiver this test runs (built on the OTLP protos) as one trace across
the gateway, llm, tools and index, under the plugin's service name."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from services.cluster.supervisor import free_port
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

TRACED = ("gateway", "llm", "tools", "index")


def _value(value: AnyValue) -> Any:
    return getattr(value, str(value.WhichOneof("value")))


def describe(spans: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The spans of the tool call's trace: service, name, and whether its parent arrived."""
    resolved = [s for s in spans if s["name"] == "resolve tool"]
    trace = [s for s in spans if resolved and s["trace_id"] == resolved[0]["trace_id"]]
    ids = {s["span_id"] for s in trace}
    return [(s["service"], s["name"], "root" if not s["parent_id"] else str(s["parent_id"] in ids)) for s in trace]


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace collector: keeps every exported span, flattened with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "resource": resource,
                            "service": resource.get("agents.service"),
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def collector() -> AsyncIterator[tuple[Receiver, int]]:
    receiver = Receiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    yield receiver, port
    await server.stop(None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, collector: tuple[Receiver, int]) -> AsyncIterator[World]:
    # Stopped while the collector still runs: the services' last export is not retried against
    # a dead collector for the exporter's whole timeout.
    async with FakeOpenAI() as openai:
        env = {**FAST, "AGENTS_TELEMETRY_OUTPUT": "off"}
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


async def bots_with_marker(world: World, marker: str) -> None:
    status, _, _ = await world.h.request("GET", f"/ai_bots?marker={marker}", user=world.admin)
    assert status == 200


async def test_switching_to_otlp_live_exports_one_dm_turn_as_one_trace_across_four_services(
    world: World, collector: tuple[Receiver, int]
) -> None:
    receiver, port = collector
    off_marker, on_marker = f"off{secrets.token_hex(6)}", f"on{secrets.token_hex(6)}"
    await bots_with_marker(world, off_marker)

    status, document, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert status == 200
    document |= {"telemetryOutput": "otlp", "openTelemetryEndpoint": f"127.0.0.1:{port}"}
    status, _, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=document)
    assert status == 200
    # Each process says when it applied the new output (no restart: the same processes).
    pids = {name: world.h.cluster.processes[name].proc.pid for name in TRACED}  # type: ignore[union-attr]

    def switched() -> bool:
        return all(any("tracing output: otlp" in line for line in world.h.logs.get(n, [])) for n in TRACED)

    await poll(switched, within=15, message="not every service switched its tracing output to otlp")
    assert {name: world.h.cluster.processes[name].proc.pid for name in TRACED} == pids  # type: ignore[union-attr]

    await bots_with_marker(world, on_marker)
    bot = await world.agent("tracer", auto_enable_new_mcp_tools=True)
    uma = world.mm.add_user("uma")
    town = world.town("trace-town", uma)
    dm = world.mm.add_direct_channel(uma, bot)
    world.openai.enqueue(
        FakeResponse.tool_call("read_channel", json.dumps({"channel_id": town.id}), call_id="call_read"),
        FakeResponse.text("The channel is quiet."),
        FakeResponse.text("Title"),
    )
    post = await world.mm.user_posts(uma, dm, "what happens in trace-town?")
    reply = await world.answer_to(post)
    assert reply["message"] == "The channel is quiet."

    def tool_trace() -> list[dict[str, Any]] | None:
        resolved = [s for s in receiver.spans if s["name"] == "resolve tool"]
        if not resolved:
            return None
        trace = [s for s in receiver.spans if s["trace_id"] == resolved[0]["trace_id"]]
        ids = {s["span_id"] for s in trace}
        # Whole: spans export as they end, the root last.
        whole = all(s["parent_id"] in ids or not s["parent_id"] for s in trace)
        return trace if whole and {s["service"] for s in trace} >= set(TRACED) else None

    spans = await poll(
        tool_trace,
        within=30,
        message=lambda: f"no whole trace across {TRACED}: {describe(receiver.spans)}",
    )
    by_id = {s["span_id"]: s for s in spans}
    assert {s["resource"]["service.name"] for s in spans} == {"mattermost-ai-agents"}
    # Parentage: every span but the root hangs off a span of the same trace, across processes.
    [root] = [s for s in spans if not s["parent_id"]]
    assert root["service"] == "gateway" and root["name"] == "process user request"
    assert (
        root["attributes"]
        | {
            "agents.post.id": post["id"],
            "agents.thread.root_post.id": post["id"],
            "agents.user.id": uma.id,
            "agents.channel.id": dm.id,
            "agents.agent.name": "tracer",
        }
        == root["attributes"]
    )
    [streaming] = [s for s in spans if s["name"] == "stream to post"]
    assert streaming["parent_id"] == root["span_id"] and streaming["attributes"]["agents.post.id"] == reply["id"]

    def ancestry(span: dict[str, Any]) -> list[str]:
        chain = []
        while span["parent_id"] in by_id:
            span = by_id[span["parent_id"]]
            chain.append(span["service"])
        return chain

    [resolve] = [s for s in spans if s["name"] == "resolve tool"]
    assert resolve["service"] == "tools" and resolve["attributes"]["agents.tool.name"] == "read_channel"
    assert ancestry(resolve)[-1] == "gateway" and "llm" in ancestry(resolve)
    [completion, *_] = [s for s in spans if s["name"] == "llm chat completion"]
    assert completion["service"] == "llm" and completion["attributes"]["agents.llm.model"] == "gpt-4o"
    assert ancestry(completion)[-1] == "gateway"
    # Outbound HTTP is traced while an output is on: the provider requests, in the turn's trace.
    assert any(s["service"] == "llm" and s["name"] == "POST" and ancestry(s)[-1:] == ["gateway"] for s in spans)
    assert any(s["service"] == "index" and ancestry(s)[-1:] == ["gateway"] for s in spans)

    # Every service's JSON log lines carry the plugin and the service (and, within a span, its trace id).
    for name in TRACED:
        entries = [json.loads(line) for line in world.h.logs[name] if line.startswith("{")]
        assert entries and all(e["plugin_ai"] == "mattermost-ai" and e["service"] == name for e in entries), name

    # Off meant off: the request made before the switch left no span; the one after it did.
    exported = json.dumps(receiver.spans)
    assert on_marker in exported and off_marker not in exported
