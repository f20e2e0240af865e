"""The inter-plugin bridge (/bridge/v1) through the gateway → llm → FakeOpenAI, validated
against the plugin's OpenAPI document."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.identity import MANAGE_SYSTEM, Identity
from tests.contract.openapi import assert_matches_openapi
from tests.fakes import anthropic as anthropic_api
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse, split_tokens
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Identity(user_id="", permissions=frozenset({MANAGE_SYSTEM}))
PLUGIN_ID = "com.example.caller"
BODY = {"posts": [{"role": "user", "message": "Say hello"}]}


@dataclass
class Bridge:
    h: ClusterHarness
    fake: FakeOpenAI
    plugin_secret: str
    service_id: str
    agent: registry_pb2.Agent

    def headers(self) -> dict[str, str]:
        """The calling plugin's credential (session mode): a plugin acting for itself."""
        return {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": self.plugin_secret}

    async def sse(self, path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, list[dict]]:
        assert self.h.http is not None
        url = f"{self.h.gateway_url}{PLUGIN}{path}"
        async with self.h.http.post(url, data=json.dumps(body), headers=self.headers() | (headers or {})) as resp:
            raw = (await resp.read()).decode()
            if resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                events = [json.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: ")]
                return resp.status, events
            return resp.status, [json.loads(raw)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bridge(postgres: SessionPostgres) -> AsyncIterator[Bridge]:
    plugin_secret = secrets.token_hex(32)
    # Licensed: tests below create agents of their own beside "helper" (several agents need one).
    env = {"AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={plugin_secret}"}
    async with FakeOpenAI() as fake, ClusterHarness(postgres, env=env) as h:
        async with h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            service = registry_pb2.ServiceConfig(
                name="fake-openai",
                type="openaicompatible",
                api_key=fake.api_key,
                api_url=fake.base_url,
                default_model="gpt-4o",
            )
            created = await registry.CreateService(
                registry_pb2.CreateServiceRequest(service=service), metadata=h.metadata(ADMIN), timeout=10
            )
            agent = await registry.CreateAgent(
                registry_pb2.CreateAgentRequest(
                    agent=registry_pb2.Agent(username="helper", display_name="Helper", service_id=created.service.id)
                ),
                metadata=h.metadata(ADMIN),
                timeout=10,
            )
        yield Bridge(h, fake, plugin_secret, created.service.id, agent.agent)


async def test_agent_completion_streams_plugin_text_stream_events(bridge: Bridge) -> None:
    bridge.fake.enqueue(FakeResponse.text("Hello there", tokens=2, usage=(9, 2)))
    status, events = await bridge.sse("/bridge/v1/completion/agent/helper", BODY)
    assert status == 200
    # Tokens that reach the llm service in one read may arrive as one text event (coalesced).
    assert [e["Type"] for e in events][-2:] == [7, 1] and {e["Type"] for e in events[:-2]} == {0}
    assert "".join(e["Value"] for e in events[:-2]) == "Hello there"
    assert events[-2]["Value"]["input_tokens"] == 9


async def test_a_streamed_completion_is_one_server_span_whose_child_is_the_llm_call(bridge: Bridge) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    bridge.fake.enqueue(FakeResponse.text("Traced", tokens=1))
    traceparent = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    status, _ = await bridge.sse("/bridge/v1/completion/agent/helper", BODY, headers=traceparent)
    assert status == 200

    def gateway(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in spans if s["trace_id"] == trace_id and s["service"] == "gateway"]

    # The caller's span is the outermost one's parent; it ends (and is written) after every other.
    spans = gateway(
        await bridge.h.wait_for_spans(lambda spans: any(s["parent_id"] == parent_id for s in gateway(spans)))
    )
    [server] = [s for s in spans if s["kind"] == "SERVER"]
    [llm] = [s for s in spans if s["kind"] == "CLIENT" and s["name"].endswith("/StreamComplete")]
    assert server["parent_id"] == parent_id and llm["parent_id"] == server["span_id"]


async def test_a_fast_answer_streams_its_first_token_alone_then_coalesced_text_events(bridge: Bridge) -> None:
    answer = " ".join(f"w{i}" for i in range(40))
    # 2 ms apart: each token its own socket read, so only the llm's coalescing joins them.
    bridge.fake.enqueue(FakeResponse.text(answer, tokens=40, usage=(9, 40), token_delay=0.002))
    started = time.monotonic()
    status, events = await bridge.sse("/bridge/v1/completion/agent/helper", BODY)
    elapsed_ms = (time.monotonic() - started) * 1000
    assert status == 200
    assert [e["Type"] for e in events][-2:] == [7, 1] and {e["Type"] for e in events[:-2]} == {0}
    # The first read goes at once (under load it may hold more than the first token).
    assert split_tokens(answer, 40)[0] in events[0]["Value"]
    # After the first message, at most one per 20 ms window, plus the one that carries Done: a
    # bound that follows the stream's real duration, so a slow machine only loosens it. One
    # message per token (~80 ms of tokens in 40 messages) breaks it.
    assert len(events[:-2]) <= elapsed_ms / 20 + 2
    assert "".join(e["Value"] for e in events[:-2]) == answer


async def test_agent_completion_without_streaming_returns_the_completion(bridge: Bridge) -> None:
    bridge.fake.enqueue(FakeResponse.text("Hi!", tokens=2))
    status, body, _ = await bridge.h.request(
        "POST", "/bridge/v1/completion/agent/helper/nostream", json_body=BODY, headers=bridge.headers()
    )
    assert status == 200 and body == {"completion": "Hi!"}
    assert_matches_openapi("POST", "/bridge/v1/completion/agent/{agent}/nostream", 200, body)


async def test_service_completion_uses_the_service_by_name(bridge: Bridge) -> None:
    bridge.fake.enqueue(FakeResponse.text("via service", tokens=1))
    status, events = await bridge.sse("/bridge/v1/completion/service/fake-openai", BODY)
    assert status == 200 and events[0] == {"Type": 0, "Value": "via service"}


async def test_a_failure_mid_stream_is_an_error_event_then_end(bridge: Bridge) -> None:
    bridge.fake.enqueue(FakeResponse.failing_after(1))
    _, events = await bridge.sse("/bridge/v1/completion/agent/helper", BODY)
    assert [e["Type"] for e in events][-2:] == [2, 1]


async def test_an_unknown_agent_is_a_404_json_error(bridge: Bridge) -> None:
    status, body, _ = await bridge.h.request(
        "POST", "/bridge/v1/completion/agent/nobody", json_body=BODY, headers=bridge.headers()
    )
    assert status == 404 and "error" in body
    assert_matches_openapi("POST", "/bridge/v1/completion/agent/{agent}", 404, body)


async def test_a_request_without_the_plugin_id_header_is_refused_with_401(bridge: Bridge) -> None:
    headers = {"X-Agents-Plugin-Secret": bridge.plugin_secret}
    status, body, _ = await bridge.h.request("GET", "/bridge/v1/agents", headers=headers)
    assert status == 401 and "Mattermost-Plugin-ID" in body["error"]


async def test_agents_and_services_list_what_plugins_may_use(bridge: Bridge) -> None:
    status, body, _ = await bridge.h.request("GET", "/bridge/v1/agents", headers=bridge.headers())
    assert status == 200
    assert_matches_openapi("GET", "/bridge/v1/agents", 200, body)
    # Other tests add agents of their own; this one is about "helper".
    assert [a for a in body["agents"] if a["username"] == "helper"] == [
        {
            "id": bridge.agent.bot_user_id,
            "displayName": "Helper",
            "username": "helper",
            "service_id": bridge.service_id,
            "service_type": "openaicompatible",
            "is_default": False,
        }
    ]
    status, body, _ = await bridge.h.request("GET", "/bridge/v1/services", headers=bridge.headers())
    assert status == 200
    assert_matches_openapi("GET", "/bridge/v1/services", 200, body)
    assert body == {"services": [{"id": bridge.service_id, "name": "fake-openai", "type": "openaicompatible"}]}


async def _create_agent(bridge: Bridge, username: str, service_id: str = "", **fields: Any) -> registry_pb2.Agent:
    async with bridge.h.channel("index") as channel:
        reply = await registry_pb2_grpc.RegistryStub(channel).CreateAgent(
            registry_pb2.CreateAgentRequest(
                agent=registry_pb2.Agent(
                    username=username, display_name=username, service_id=service_id or bridge.service_id, **fields
                )
            ),
            metadata=bridge.h.metadata(ADMIN),
            timeout=10,
        )
    return reply.agent


async def test_reasoning_enabled_alone_makes_a_bridge_completion_reason_with_the_default_effort(
    bridge: Bridge,
) -> None:
    await _create_agent(bridge, "pondering", reasoning_enabled=True)  # no effort, no budget
    bridge.fake.enqueue(FakeResponse.text("Pondered.", tokens=1))
    body = {"posts": [{"role": "user", "message": "ponder this"}]}
    status, _ = await bridge.sse("/bridge/v1/completion/agent/pondering", body)
    assert status == 200
    sent = next(r for r in bridge.fake.requests if "ponder this" in json.dumps(r.body))
    assert sent.body["reasoning_effort"] == "medium"


async def test_an_access_change_applies_to_the_next_bridge_call_even_while_the_agent_is_cached(
    bridge: Bridge,
) -> None:
    user = bridge.h.mattermost.add_user("bridge-user")
    agent = await _create_agent(bridge, "gated")
    body = {**BODY, "user_id": user.id}
    bridge.fake.enqueue(FakeResponse.text("allowed", tokens=1))
    status, _ = await bridge.sse("/bridge/v1/completion/agent/gated", body)
    assert status == 200  # the gateway now holds "gated" in its agent cache
    # Changed behind the gateway's back (straight at the registry, as another replica would).
    blocked = registry_pb2.Agent()
    blocked.CopyFrom(agent)
    blocked.user_access_level = registry_pb2.ACCESS_LEVEL_BLOCK
    blocked.user_ids.append(user.id)
    async with bridge.h.channel("index") as channel:
        await registry_pb2_grpc.RegistryStub(channel).UpdateAgent(
            registry_pb2.UpdateAgentRequest(agent=blocked), metadata=bridge.h.metadata(ADMIN), timeout=10
        )
    status, events = await bridge.sse("/bridge/v1/completion/agent/gated", body)
    assert status == 403 and "error" in events[0]


async def test_an_agent_deleted_through_the_gateway_stops_being_served_at_once(bridge: Bridge) -> None:
    admin = bridge.h.mattermost.add_user("bridge-admin", roles="system_user system_admin")
    agent = await _create_agent(bridge, "shortlived")
    bridge.fake.enqueue(FakeResponse.text("still here", tokens=1))
    status, _ = await bridge.sse("/bridge/v1/completion/agent/shortlived", BODY)
    assert status == 200  # cached now
    status, _, _ = await bridge.h.request("DELETE", f"/agents/{agent.id}", user=admin)
    assert status == 200
    status, events = await bridge.sse("/bridge/v1/completion/agent/shortlived", BODY)
    assert status == 404 and "error" in events[0]


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
JSON_BODY = {"posts": [{"role": "user", "message": "answer in JSON"}], "json_output_format": SCHEMA}
FENCED = '```json\n{"answer": "yes"}\n```'


def _streamed_text(events: list[dict]) -> str:
    return "".join(e["Value"] for e in events if e["Type"] == 0)


async def test_a_json_schema_reaches_the_provider_only_when_the_agent_has_structured_output_on(
    bridge: Bridge,
) -> None:
    await _create_agent(bridge, "structured", structured_output_enabled=True)
    bridge.fake.enqueue(FakeResponse.text('{"answer": "yes"}', tokens=3))
    status, _ = await bridge.sse("/bridge/v1/completion/agent/structured", JSON_BODY)
    assert status == 200
    sent = bridge.fake.requests[-1].body
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA

    # Off: the plugin's fallback, no schema and the answer's Markdown fence stripped.
    await _create_agent(bridge, "freeform", structured_output_enabled=False)
    bridge.fake.enqueue(FakeResponse.text(FENCED, tokens=7))
    status, events = await bridge.sse("/bridge/v1/completion/agent/freeform", JSON_BODY)
    assert status == 200 and "response_format" not in bridge.fake.requests[-1].body
    assert _streamed_text(events) == '{"answer": "yes"}'
    bridge.fake.enqueue(FakeResponse.text(FENCED, tokens=7))
    status, body, _ = await bridge.h.request(
        "POST", "/bridge/v1/completion/agent/freeform/nostream", json_body=JSON_BODY, headers=bridge.headers()
    )
    assert (status, body) == (200, {"completion": '{"answer": "yes"}'})
    assert "response_format" not in bridge.fake.requests[-1].body


async def test_an_anthropic_agent_that_thinks_answers_a_json_request_without_a_schema(bridge: Bridge) -> None:
    claude = anthropic_api.FakeAnthropic()
    url = await claude.start()
    try:
        service = registry_pb2.ServiceConfig(
            name="fake-claude",
            type="anthropic",
            api_key=anthropic_api.API_KEY,
            api_url=url,
            default_model=anthropic_api.MODELS[0],
        )
        async with bridge.h.channel("index") as channel:
            created = await registry_pb2_grpc.RegistryStub(channel).CreateService(
                registry_pb2.CreateServiceRequest(service=service), metadata=bridge.h.metadata(ADMIN), timeout=10
            )
        # Thinking on, so Structured Output off: the guide says the two cannot be combined.
        await _create_agent(bridge, "thinker", service_id=created.service.id, reasoning_enabled=True)
        claude.enqueue(anthropic_api.text(["```json\n", '{"answer": ', '"yes"}', "\n``", "`"]))
        status, events = await bridge.sse("/bridge/v1/completion/agent/thinker", JSON_BODY)
        assert status == 200, events
        [sent] = [r.json() for r in claude.requests if r.method == "POST"]
        assert sent["thinking"]["type"] == "enabled" and "output_config" not in sent
        assert _streamed_text(events) == '{"answer": "yes"}'
    finally:
        await claude.close()
