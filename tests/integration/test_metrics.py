"""Every service's Prometheus listener through real processes: after traffic through the gateway
(a bridge completion that reaches the llm service and FakeOpenAI, requests full of distinct ids),
each one's text parses with prometheus_client's parser and shows the guide's names with sane
values, and no label carries an id from a URL."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from services.cluster.supervisor import GRPC_SERVICES
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Identity(user_id="", permissions=frozenset({MANAGE_SYSTEM}))
PLUGIN_ID = "com.example.metrics"
BODY = {"posts": [{"role": "user", "message": "Say hello"}]}
SERVICES = (*GRPC_SERVICES, "gateway")
# Requests whose URLs each carry ids of their own: label values must not follow them.
DISTINCT_IDS = 30


@dataclass
class Traffic:
    h: ClusterHarness
    ids: list[str]
    started: float
    team_id: str


async def scrape(h: ClusterHarness, service: str) -> list[Sample]:
    assert h.cluster is not None and h.http is not None
    async with h.http.get(h.cluster.metrics_url(service)) as resp:
        assert resp.status == 200
        text = await resp.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traffic(postgres: SessionPostgres) -> AsyncIterator[Traffic]:
    started = time.time()
    plugin_secret = secrets.token_hex(32)
    env = {"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={plugin_secret}"}
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
            await registry.CreateAgent(
                registry_pb2.CreateAgentRequest(
                    agent=registry_pb2.Agent(username="metered", display_name="Metered", service_id=created.service.id)
                ),
                metadata=h.metadata(ADMIN),
                timeout=10,
            )
        headers = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": plugin_secret}
        fake.enqueue(FakeResponse.text("Hi!", tokens=2))
        status, body, _ = await h.request(
            "POST", "/bridge/v1/completion/agent/metered/nostream", json_body=BODY, headers=headers
        )
        assert status == 200 and body == {"completion": "Hi!"}
        # A turn in a team: its tokens are attributed to the team (in the usage log).
        team_id = secrets.token_hex(13)
        fake.enqueue(FakeResponse.text("Hi team!", tokens=3))
        message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text="Say hello")])
        turn = llm_pb2.CompletionRequest(
            service_id=created.service.id, messages=[message], team_id=team_id, agent_username="metered"
        )
        async with h.channel("llm") as channel:
            reply = await llm_pb2_grpc.LLMStub(channel).Complete(
                llm_pb2.CompleteRequest(request=turn), metadata=h.metadata(), timeout=20
            )
        assert reply.text == "Hi team!"
        user: FakeUser = h.mattermost.add_user("meter-reader")
        assert (await h.get("/ai_bots", user=user))[0] == 200
        ids = [secrets.token_hex(13) for _ in range(DISTINCT_IDS)]
        for n, id_ in enumerate(ids):
            # An unknown agent by name (404), a path no route matches (404), ids in the query.
            if n % 2:
                path = f"/bridge/v1/completion/agent/{id_}/nostream"
                status, _, _ = await h.request("POST", path, json_body=BODY, headers=headers)
            else:
                status, _, _ = await h.request("GET", f"/no-such-route/{id_}?postid={id_}", user=user)
            assert status == 404
        yield Traffic(h, [*ids, team_id], started, team_id)


async def test_every_service_serves_its_start_time_info_and_grpc_calls(traffic: Traffic) -> None:
    for service in SERVICES:
        samples = await scrape(traffic.h, service)
        started = value(samples, "agents_system_plugin_start_timestamp_seconds")
        assert traffic.started <= started <= time.time(), service
        assert value(samples, "agents_system_plugin_info", service=service) == 1
        if service == "gateway":
            continue
        # The harness asks every service's health until it serves.
        health = {"grpc_service": "grpc.health.v1.Health", "grpc_method": "Check"}
        checks = value(samples, "agents_grpc_server_handled_total", **health)
        assert checks >= 1, service
        assert value(samples, "agents_grpc_server_handling_seconds_count", **health) == checks


async def test_the_gateway_counts_requests_errors_and_times_routes_by_template(traffic: Traffic) -> None:
    samples = await scrape(traffic.h, "gateway")
    requests = value(samples, "agents_http_requests_total")
    errors = value(samples, "agents_http_errors_total")
    assert requests >= DISTINCT_IDS + 2 and errors >= DISTINCT_IDS and errors < requests
    nostream = "/bridge/v1/completion/agent/{agent}/nostream"
    assert value(samples, "agents_api_time_seconds_count", handler=nostream, method="POST", status_code="200") == 1
    unknown_agents = value(samples, "agents_api_time_seconds_count", handler=nostream, status_code="404")
    assert unknown_agents == DISTINCT_IDS // 2
    assert value(samples, "agents_api_time_seconds_count", handler="unmatched", status_code="404") == DISTINCT_IDS // 2
    assert value(samples, "agents_api_time_seconds_count", handler="/ai_bots", method="GET", status_code="200") == 1
    assert value(samples, "agents_api_time_seconds_sum") > 0


async def test_the_llm_service_counts_upstream_requests_and_their_calls(traffic: Traffic) -> None:
    samples = await scrape(traffic.h, "llm")
    assert value(samples, "agents_llm_requests_total", outcome="success") == 2
    assert value(samples, "agents_grpc_server_handled_total", grpc_service="agents.llm.v1.LLM", grpc_code="OK") >= 2
    assert value(samples, "agents_llm_overhead_seconds_count") == 2
    index = await scrape(traffic.h, "index")
    registry = {"grpc_service": "agents.registry.v1.Registry", "grpc_method": "CreateAgent", "grpc_code": "OK"}
    assert value(index, "agents_grpc_server_handled_total", **registry) == 1


async def test_labels_carry_no_id_from_a_url_and_series_stay_bounded(traffic: Traffic) -> None:
    for service in SERVICES:
        samples = await scrape(traffic.h, service)
        labels = {v for s in samples for v in s.labels.values()}
        assert not [v for v in labels if any(id_ in v for id_ in traffic.ids)], service
    gateway = await scrape(traffic.h, "gateway")
    series = {tuple(sorted(s.labels.items())) for s in gateway if s.name == "agents_api_time_seconds_count"}
    # /ai_bots, the completion's 200 and 404, the unmatched 404: whatever the number of ids.
    assert len(series) == 4, series


async def test_tokens_are_counted_by_agent_with_no_team_id_label(traffic: Traffic) -> None:
    # The plugin labels them team_id too: an id from data, one more series per team for ever.
    samples = await scrape(traffic.h, "llm")
    tokens = [s for s in samples if s.name in ("agents_llm_input_tokens_total", "agents_llm_output_tokens_total")]
    assert {s.name for s in tokens} == {"agents_llm_input_tokens_total", "agents_llm_output_tokens_total"}
    assert all(s.labels == {"bot_name": "metered"} for s in tokens), tokens
    assert not [s for s in samples if traffic.team_id in s.labels.values()]
