"""Secrets in a query string (``?access_token=``, OAuth's ``code``, an API ``key``) reach no span
and no log line: the gateway's HTTP server spans, through the file exporter, and every service's
log, whatever the request's outcome."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.polling import poll

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


# Requests aiohttp cannot parse, each carrying the sentinel where a client puts a secret: in the
# query of an over-long or malformed request line, in a malformed or over-long Authorization header.
UNPARSEABLE = {
    "request line too long": b"GET {prefix}/oauth/callback?code={secret}&state=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    "control character in the query": b"GET {prefix}/oauth/callback?code={secret}&x=\x01 HTTP/1.1\r\n\r\n",
    "unknown HTTP version": b"GET {prefix}/oauth/callback?code={secret} HTTP/9.9\r\n\r\n",
    "space before a header's colon": b"GET {prefix}/mcp/tools HTTP/1.1\r\nAuthorization : Bearer {secret}\r\n\r\n",
    "header too long": b"GET {prefix}/mcp/tools HTTP/1.1\r\nAuthorization: Bearer {secret}" + b"a" * 9000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", UNPARSEABLE.values(), ids=UNPARSEABLE.keys())
async def test_an_unparseable_request_is_a_json_400_that_neither_echoes_nor_logs_its_secrets(
    harness: ClusterHarness, request_bytes: bytes
) -> None:
    sentinel = f"sentinel{secrets.token_hex(8)}"
    raw = request_bytes.replace(b"{prefix}", PLUGIN.encode()).replace(b"{secret}", sentinel.encode())
    host, port = harness.gateway_url.removeprefix("http://").rsplit(":", 1)
    logged = len(request_lines(harness))
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw.replace(b"\r\n\r\n", f"\r\nHost: {host}\r\n\r\n".encode(), 1))
    await writer.drain()
    answer = await reader.read()  # the gateway closes the connection after its answer
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer[:200]
    assert b"application/json" in head
    assert "error" in json.loads(body)
    assert sentinel.encode() not in answer
    # The gateway logs the refusal before it answers: once that line is read, nothing else about
    # this request is still to come.
    await poll(lambda: len(request_lines(harness)) > logged, within=10, message="the refusal was not logged")
    assert not [line for lines in harness.logs.values() for line in lines if sentinel in line]


def request_lines(harness: ClusterHarness) -> list[str]:
    return [line for line in harness.logs.get("gateway", []) if "request" in line]
