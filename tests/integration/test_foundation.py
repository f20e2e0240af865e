"""The foundation end to end: real processes, real PostgreSQL, a fake Mattermost over HTTP."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.gateway.auth import sign_request
from services.index.registry.config_store import NOTIFY_CHANNEL
from tests.harness import ClusterHarness, SessionPostgres, health_status, insert_agent
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")


def new_id() -> str:
    return secrets.token_hex(13)


async def set_default_bot(database_url: str, username: str) -> None:
    config = json.dumps({"defaultBotName": username, "services": []})
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO agents_confighistory (id, config, createat, active) VALUES (%s, %s, %s, true)",
            (new_id(), config, int(time.time() * 1000)),
        )
        await conn.execute("SELECT pg_notify(%s, '')", (NOTIFY_CHANNEL,))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[ClusterHarness]:
    async with ClusterHarness(postgres) as h:
        yield h


async def test_every_service_reports_serving_through_standard_grpc_health(harness: ClusterHarness) -> None:
    for service in ("index", "llm", "tools", "mcp"):
        async with harness.channel(service) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_ai_bots_lists_the_agents_the_caller_may_use_with_the_default_first(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    alice, bob = mm.add_user("alice"), mm.add_user("bob")
    team = mm.add_team("eng")
    mm.add_member(team, bob)
    helper_bot = mm.add_user("helper", is_bot=True)
    eng_bot = mm.add_user("engbot", is_bot=True)
    hidden_bot = mm.add_user("hidden", is_bot=True)
    await insert_agent(harness.database_url, "helper", helper_bot.id)
    await insert_agent(harness.database_url, "engbot", eng_bot.id, useraccesslevel=1, teamids=json.dumps([team.id]))
    await insert_agent(harness.database_url, "hidden", hidden_bot.id, useraccesslevel=3)
    await set_default_bot(harness.database_url, "engbot")

    status, body = await harness.get("/ai_bots", user=bob)
    assert status == 200
    assert [b["username"] for b in body["bots"]] == ["engbot", "helper"]
    assert body["bots"][0]["id"] == eng_bot.id
    assert body["bots"][0]["userAccessLevel"] == 1
    assert body["searchEnabled"] is False and body["allowUnsafeLinks"] is False

    status, body = await harness.get("/ai_bots", user=alice)
    assert status == 200
    assert [b["username"] for b in body["bots"]] == ["helper"]


async def test_a_request_without_identity_is_refused_with_401(harness: ClusterHarness) -> None:
    status, body = await harness.get("/ai_bots")
    assert status == 401
    assert body == {"error": "authentication required"}


async def test_an_invalid_token_is_refused_with_401_and_not_echoed(harness: ClusterHarness) -> None:
    status, body, _ = await harness.request("GET", "/ai_bots", headers={"Authorization": "Bearer not-a-token"})
    assert status == 401
    assert "not-a-token" not in json.dumps(body)


async def test_a_token_that_is_not_utf8_is_refused_with_401(harness: ClusterHarness) -> None:
    host, port = harness.gateway_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /plugins/mattermost-ai/ai_bots HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n".encode()
        + b"Authorization: Bearer \xff\xfe\r\n\r\n"
    )
    await writer.drain()
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]


async def test_a_bare_mattermost_user_id_header_is_not_trusted(harness: ClusterHarness) -> None:
    alice = harness.mattermost.add_user("mallory")
    status, _, _ = await harness.request("GET", "/ai_bots", headers={"Mattermost-User-Id": alice.id})
    assert status == 401


async def test_an_unknown_route_answers_404_json(harness: ClusterHarness) -> None:
    user = harness.mattermost.add_user("carol")
    status, body = await harness.get("/no/such/route", user=user)
    assert status == 404
    assert body == {"error": "not found"}


async def test_a_method_a_route_does_not_serve_answers_405_json_listing_the_allowed_ones(
    harness: ClusterHarness,
) -> None:
    user = harness.mattermost.add_user("peggy")
    status, body, headers = await harness.request("DELETE", "/files/content", user=user)
    assert status == 405
    assert body == {"error": "Method Not Allowed"}
    # RFC 9110: a 405 lists the methods the resource serves.
    assert headers["Allow"] == "POST"


async def test_one_trace_covers_the_gateway_http_span_and_the_index_grpc_spans(harness: ClusterHarness) -> None:
    user = harness.mattermost.add_user("dave")
    trace_id = secrets.token_hex(16)
    traceparent = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    status, _, _ = await harness.request("GET", "/ai_bots", user=user, headers={"traceparent": traceparent})
    assert status == 200

    def complete(spans: list[dict]) -> bool:
        mine = [s for s in spans if s["trace_id"] == trace_id]
        return any(s["service"] == "index" and s["kind"] == "SERVER" for s in mine)

    spans = [s for s in await harness.wait_for_spans(complete) if s["trace_id"] == trace_id]
    http_server = [s for s in spans if s["service"] == "gateway" and s["kind"] == "SERVER"]
    grpc_client = [s for s in spans if s["service"] == "gateway" and s["kind"] == "CLIENT" and "Registry" in s["name"]]
    grpc_server = [s for s in spans if s["service"] == "index" and s["kind"] == "SERVER"]
    assert http_server and len(grpc_client) == 1 and len(grpc_server) == 1
    by_id = {s["span_id"]: s for s in spans}
    # The gRPC client span descends from the gateway's HTTP server span (possibly via the sub-app span).
    parent = by_id.get(grpc_client[0]["parent_id"])
    assert parent is not None and parent["service"] == "gateway" and parent["kind"] == "SERVER"
    assert grpc_server[0]["parent_id"] == grpc_client[0]["span_id"]
    assert grpc_server[0]["name"] == "/agents.registry.v1.Registry/ListUsableAgents"


async def test_a_backend_that_is_down_gives_503_with_retry_after_at_once(postgres: SessionPostgres) -> None:
    async with ClusterHarness(postgres) as h:
        user = h.mattermost.add_user("erin")
        assert h.cluster is not None
        await h.cluster.stop_service("index")
        status, body, headers = await h.request("GET", "/ai_bots", user=user)
        assert status == 503  # UNAVAILABLE at once: a call that waited out its deadline would be a 504
        assert "Retry-After" in headers
        assert "error" in body


async def test_sigterm_turns_health_not_serving_then_exits_cleanly(postgres: SessionPostgres) -> None:
    async with ClusterHarness(postgres, env={"AGENTS_READINESS_DRAIN_SECONDS": "2"}) as h:
        assert h.cluster is not None
        proc = h.cluster.processes["tools"].proc
        proc.send_signal(signal.SIGTERM)
        async with h.channel("tools") as channel:

            async def not_serving() -> bool:
                return await health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING

            await poll(not_serving, within=5, interval=0.05, message="tools never reported NOT_SERVING")
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_a_draining_index_ends_its_config_watches_instead_of_waiting_out_the_grace(
    postgres: SessionPostgres,
) -> None:
    """Every other service watches the plugin configuration on the index, a stream that never
    ends by itself: the index's drain ends them (their clients reconnect to a live replica), so
    its shutdown does not take the whole grace."""
    grace = {"index": {"AGENTS_SHUTDOWN_GRACE_SECONDS": "120"}}
    async with ClusterHarness(postgres, process_env=grace) as h:
        assert h.cluster is not None
        proc = h.cluster.processes["index"].proc
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_trusted_proxy_mode_accepts_signed_requests_and_refuses_forged_ones(harness: ClusterHarness) -> None:
    secret = "shim-secret"
    env = {"AGENTS_GATEWAY_AUTH_MODE": "trusted_proxy", "AGENTS_GATEWAY_PROXY_SHARED_SECRET": secret}
    # The mode is the gateway's alone: a gateway of its own beside the module cluster's will do.
    gateway = await harness.start_gateway("gateway-trusted-proxy", env=env)
    user = harness.mattermost.add_user("frank")
    path = "/plugins/mattermost-ai/ai_bots"

    def signed(user_id: str, *, key: str = secret, ts: int | None = None) -> dict[str, str]:
        stamp = str(int(time.time()) if ts is None else ts)
        return {
            "Mattermost-User-Id": user_id,
            "X-Agents-Timestamp": stamp,
            "X-Agents-Signature": sign_request(key, stamp, "GET", path, user_id),
        }

    async def status_of(**kwargs: Any) -> int:
        status, _, _ = await harness.request("GET", "/ai_bots", base_url=gateway, **kwargs)
        return status

    status, body, _ = await harness.request("GET", "/ai_bots", base_url=gateway, headers=signed(user.id))
    assert status == 200, body
    assert await status_of(headers={"Mattermost-User-Id": user.id}) == 401
    assert await status_of(headers=signed(user.id, key="guess")) == 401
    assert await status_of(headers=signed(user.id, ts=int(time.time()) - 3600)) == 401
    # A valid session token is not accepted in this mode: only the shim speaks for users.
    assert await status_of(user=user) == 401
