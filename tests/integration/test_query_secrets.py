"""Secrets in a query string (``?access_token=``, OAuth's ``code``, an API ``key``) reach no span
and no log line: the gateway's HTTP server spans, through the file exporter, and every service's
log, whatever the request's outcome."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.harness import ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET_PARAMS = ("access_token", "token", "api_key", "key", "code", "state", "client_secret", "password", "sig")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[ClusterHarness]:
    async with ClusterHarness(postgres) as h:
        yield h


async def test_query_string_secrets_reach_no_span_and_no_log_line(harness: ClusterHarness) -> None:
    sentinel = f"sentinel{secrets.token_hex(8)}"
    query = "&".join(f"{name}={sentinel}{name}" for name in SECRET_PARAMS) + "&page=2"
    alice = harness.mattermost.add_user("alice")
    outcomes = [
        await harness.request("GET", f"/ai_bots?{query}", user=alice),  # 200
        await harness.request("GET", f"/ai_bots?{query}"),  # 401
        await harness.request("GET", f"/no/such/route?{query}", user=alice),  # 404
    ]
    assert [status for status, _, _ in outcomes] == [200, 401, 404]

    def gateway_server_spans(spans: list[dict]) -> list[dict]:
        return [s for s in spans if s["service"] == "gateway" and s["kind"] == "SERVER" and "page=2" in json.dumps(s)]

    spans = await harness.wait_for_spans(lambda spans: len(gateway_server_spans(spans)) >= 3)
    # The spans still say what was asked, with every secret's value replaced.
    targets = [s["attributes"].get("http.target", "") for s in gateway_server_spans(spans)]
    assert all("access_token=REDACTED" in t and "page=2" in t for t in targets), targets
    assert sentinel not in json.dumps(spans)
    assert not [line for lines in harness.logs.values() for line in lines if sentinel in line]
