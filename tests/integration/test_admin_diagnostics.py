"""The admin's diagnostic and outbound settings of the plugin configuration, saved through the
gateway (``PUT /admin/config``) and applied live by the running processes: debug logging on every
service, the LLM Trace in the llm service, and ``allowedUpstreamHostnames`` on provider requests.

The assertions read each process's own log lines (JSON, captured by the harness) and what the
fake OpenAI upstream received over real loopback HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.index.v1 import index_pb2 as index_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.tools.v1 import tools_pb2 as tools_pb2
from google.protobuf.descriptor import ServiceDescriptor

from tests.fakes.openai import FakeOpenAI
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The service's API key: it must appear in no log line of any process, trace on or off.
SENTINEL_KEY = "sk-sentinel-trace-key-7f3a9c1e5b"

# Per gRPC service, an API whose every call the service's interceptor sees.
GRPC_APIS: dict[str, ServiceDescriptor] = {
    "index": index_pb2.DESCRIPTOR.services_by_name["Index"],
    "llm": llm_pb2.DESCRIPTOR.services_by_name["LLM"],
    "tools": tools_pb2.DESCRIPTOR.services_by_name["Tools"],
    "mcp": mcp_pb2.DESCRIPTOR.services_by_name["MCP"],
}
SERVICES = ("gateway", *GRPC_APIS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI(api_key=SENTINEL_KEY) as openai:
        # Licensed: each test makes its own agent.
        async with ClusterHarness(postgres, env={**FAST, "AGENTS_INDEX_LICENSE": "enterprise"}) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


def applied_in_llm(world: World) -> list[str]:
    """The llm service's log lines saying it applied a configuration revision."""
    return [line for line in world.h.logs.get("llm", []) if "plugin configuration revision" in line]


async def save_config(world: World, **settings: Any) -> None:
    """Save the stored configuration with ``settings`` changed, as the System Console does
    (read, change, write back; masked secrets keep the stored ones), and wait until the llm
    service applied it."""
    status, config = await world.h.get("/admin/config", user=world.admin)
    assert status == 200, config
    before = len(applied_in_llm(world))
    status, body, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body={**config, **settings})
    assert status == 200, body
    await poll(lambda: len(applied_in_llm(world)) > before, within=20, message="the llm never applied the save")


def records(world: World, service: str, start: int = 0) -> list[dict[str, Any]]:
    """The service's JSON log records from line ``start`` on."""
    out = []
    for line in world.h.logs.get(service, [])[start:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # not one of the service's own records (a library printing to stderr)
    return out


async def call_once(world: World, service: str) -> None:
    """One call into ``service`` from outside: an HTTP route of the gateway, or the first RPC of
    its API (its answer does not matter, only that the process served it)."""
    if service == "gateway":
        status, _ = await world.h.get("/ai_bots", user=world.admin)
        assert status == 200
        return
    method = GRPC_APIS[service].methods[0]
    async with world.h.channel(service) as channel:
        call = channel.unary_unary(f"/{GRPC_APIS[service].full_name}/{method.name}")
        try:
            await call(b"", metadata=world.h.metadata(), timeout=10)
        except grpc.aio.AioRpcError:
            pass


def switched(world: World, service: str, state: str, start: int) -> int | None:
    """The log line index (``start`` or later) at which ``service`` said debug logging turned ``state``."""
    lines = world.h.logs.get(service, [])
    for index in range(start, len(lines)):
        if f'"debug logging {state} (plugin configuration)"' in lines[index]:
            return index
    return None


async def wait_switched(world: World, state: str, start: dict[str, int]) -> dict[str, int]:
    """Per service, the line at which it switched debug logging ``state``, once every one has."""
    found: dict[str, int] = {}

    def all_switched() -> bool:
        for service in SERVICES:
            line = switched(world, service, state, start.get(service, 0))
            if line is not None:
                found[service] = line
        return len(found) == len(SERVICES)

    await poll(all_switched, within=20, message=lambda: f"debug logging {state} only in {sorted(found)}")
    return found


async def test_debug_logging_turns_every_service_to_debug_and_back_without_a_restart(world: World) -> None:
    await save_config(world, enableDebugLogging=True)
    on = await wait_switched(world, "on", {})
    for service in SERVICES:

        async def debug_record(service: str = service) -> bool:
            await call_once(world, service)
            return any(r["level"] == "debug" for r in records(world, service, on[service]))

        await poll(debug_record, within=20, message=f"{service} wrote no debug record while debug logging was on")

    await save_config(world, enableDebugLogging=False)
    off = await wait_switched(world, "off", on)
    for service in SERVICES:
        await call_once(world, service)
    # Switching on again marks, in each process's own log order, the end of what the calls
    # above wrote while debug logging was off.
    await save_config(world, enableDebugLogging=True)
    again = await wait_switched(world, "on", off)
    for service in SERVICES:
        lines = world.h.logs[service][off[service] : again[service]]
        assert not [line for line in lines if '"level": "debug"' in line], service
    await save_config(world, enableDebugLogging=False)
    await wait_switched(world, "off", again)


async def test_llm_trace_logs_the_provider_request_and_answer_with_the_key_redacted(world: World) -> None:
    await save_config(world, enableLLMTrace=True)
    bot = await world.agent("tracer")
    ida = world.mm.add_user("ida-trace")
    dm = world.mm.add_direct_channel(ida, bot)
    post = await world.mm.user_posts(ida, dm, "trace marker 4711: what is the capital of France?")
    reply = await world.answer_to(post, within=30)
    assert reply["props"]["agents_stream_status"] == "done"

    def traced(kind: str) -> list[dict[str, Any]]:
        return [r for r in records(world, "llm") if r.get("llm_trace") == kind]

    # The answer's request, and the conversation title's after it, both quote the post.
    requests = await poll(
        lambda: [r for r in traced("request") if "trace marker 4711" in r["body"]],
        message="no trace record of the provider request",
    )
    for request in requests:
        assert request["method"] == "POST" and request["url"].startswith(world.openai.base_url)
        assert json.loads(request["headers"])["Authorization"] == "REDACTED"
        assert json.loads(request["body"])["model"] == "gpt-4o"
    responses = await poll(lambda: traced("response"), message="no trace record of the provider response")
    assert {r["status"] for r in responses} == {200}
    completions = await poll(
        lambda: [r for r in traced("completion") if json.loads(r["result"])["text"] == reply["message"]],
        message="no trace record of the completion",
    )
    for completion in completions:
        assert completion["service_id"] == world.service_id and completion["model"] == "gpt-4o"
    # The key went to the provider, and into no log line of any process.
    assert world.openai.requests[-1].headers["Authorization"] == f"Bearer {SENTINEL_KEY}"
    leaked = [(service, line) for service, lines in world.h.logs.items() for line in lines if SENTINEL_KEY in line]
    assert not leaked
    await save_config(world, enableLLMTrace=False)


async def test_a_provider_outside_the_allowed_upstream_hostnames_is_never_contacted(world: World) -> None:
    bot = await world.agent("fenced")
    eve = world.mm.add_user("eve-fenced")
    dm = world.mm.add_direct_channel(eve, bot)
    sent = len(world.openai.requests)
    await save_config(world, allowedUpstreamHostnames="api.openai.com, *.example.com", enableLLMTrace=True)
    post = await world.mm.user_posts(eve, dm, "are you there?")
    reply = await world.answer_to(post, within=30)
    assert reply["message"].startswith("Sorry! An error occurred while accessing the LLM: ")
    assert "allowedUpstreamHostnames" in reply["message"]
    assert "127.0.0.1" not in reply["message"]
    # The LLM Trace records the refusal, and no request: none went out.
    await poll(
        lambda: [
            r
            for r in records(world, "llm")
            if r.get("llm_trace") == "completion" and "allowedUpstreamHostnames" in r["failure"]
        ],
        message="no trace record of the refused completion",
    )
    assert not [r for r in records(world, "llm") if r.get("llm_trace") == "request" and "are you there?" in r["body"]]
    # Transcription goes through the same guard.
    async with world.h.channel("llm") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(
                "/agents.llm.v1.LLM/Transcribe",
                request_serializer=llm_pb2.TranscribeRequest.SerializeToString,
                response_deserializer=llm_pb2.TranscribeResponse.FromString,
            )(
                llm_pb2.TranscribeRequest(service_id=world.service_id, audio=b"ID3" + b"\x00" * 64),
                metadata=world.h.metadata(),
                timeout=10,
            )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(world.openai.requests) == sent

    # The same service once its host is listed answers as before.
    await save_config(world, allowedUpstreamHostnames="api.openai.com, 127.0.0.1")
    post = await world.mm.user_posts(eve, dm, "and now?")
    reply = await world.answer_to(post, within=30)
    assert reply["props"]["agents_stream_status"] == "done"
    assert len(world.openai.requests) > sent
    await save_config(world, allowedUpstreamHostnames="", enableLLMTrace=False)
