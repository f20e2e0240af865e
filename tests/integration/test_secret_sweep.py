"""A sweep with sentinel secrets through real processes: a provider key and a search key saved in
the plugin configuration, a bridge plugin secret, a user's session token sent as a bearer header,
as the MMAUTHTOKEN cookie and as ``?access_token=``, and a wrong token, all used in real requests
(one reaching the provider with its key). None of them appears in any service's log, any span
(the file exporter, as every output is redacted alike) or any service's metrics."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.cluster.supervisor import GRPC_SERVICES
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLUGIN_ID = "com.example.sweep"
PROVIDER_KEY = f"sk-sentinel-provider-{secrets.token_hex(8)}"
SEARCH_KEY = f"sentinel-search-{secrets.token_hex(8)}"
PLUGIN_SECRET = f"sentinel-plugin-{secrets.token_hex(16)}"
WRONG_TOKEN = f"sentinelwrong{secrets.token_hex(8)}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[tuple[ClusterHarness, FakeOpenAI]]:
    env = {"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={PLUGIN_SECRET}"}
    async with FakeOpenAI(api_key=PROVIDER_KEY) as fake, ClusterHarness(postgres, env=env) as h:
        yield h, fake


async def test_sentinel_secrets_reach_no_log_line_span_or_metric(harness: tuple[ClusterHarness, FakeOpenAI]) -> None:
    h, fake = harness
    admin = h.mattermost.add_user("sweep-admin", roles="system_user system_admin")
    vera = h.mattermost.add_user("vera")
    status, document, _ = await h.request("GET", "/admin/config", user=admin)
    assert status == 200
    document["services"] = [
        {
            "id": "sweep-openai",
            "name": "Sweep",
            "type": "openaicompatible",
            "apiURL": fake.base_url,
            "apiKey": PROVIDER_KEY,
            "defaultModel": "gpt-4o",
        }
    ]
    document["webSearch"] = {"enabled": True, "provider": "brave", "brave": {"apiKey": SEARCH_KEY}}
    assert (await h.request("PUT", "/admin/config", user=admin, json_body=document))[0] == 200
    agent = {"name": "sweeper", "displayName": "Sweeper", "serviceID": "sweep-openai"}
    status, created, _ = await h.request("POST", "/agents", user=admin, json_body=agent)
    assert status in (200, 201), created

    # The provider key reaches the provider: the completion succeeds only with it.
    fake.enqueue(FakeResponse.text("Swept.", tokens=2))
    bridge = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": PLUGIN_SECRET}
    body = {"posts": [{"role": "user", "message": "Sweep"}]}
    status, reply, _ = await h.request(
        "POST", "/bridge/v1/completion/agent/sweeper/nostream", json_body=body, headers=bridge
    )
    assert (status, reply) == (200, {"completion": "Swept."})

    token = vera.token
    outcomes = [
        await h.request("GET", "/ai_bots", headers={"Authorization": f"Bearer {token}"}),
        await h.request(
            "GET", "/ai_bots", headers={"Cookie": f"MMAUTHTOKEN={token}", "X-Requested-With": "XMLHttpRequest"}
        ),
        await h.request("GET", f"/ai_bots?access_token={token}"),
        await h.request("GET", f"/no/such/route?access_token={token}", user=vera),
        await h.request("GET", "/ai_bots", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}),
        await h.request("GET", f"/ai_bots?access_token={WRONG_TOKEN}"),
    ]
    assert [status for status, _, _ in outcomes][:2] == [200, 200]
    assert [status for status, _, _ in outcomes][4:] == [401, 401]

    # Spans are written as they end: the completion's and the last request's are there.
    await h.wait_for_spans(lambda spans: any(s["name"] == "llm chat completion" for s in spans))
    await h.wait_for_spans(lambda spans: sum(s["service"] == "gateway" and s["kind"] == "SERVER" for s in spans) >= 9)
    assert h.cluster is not None and h.http is not None
    metrics = []
    for service in (*GRPC_SERVICES, "gateway"):
        async with h.http.get(h.cluster.metrics_url(service)) as resp:
            metrics.append(await resp.text())
    places = {
        "logs": "\n".join(line for lines in h.logs.values() for line in lines),
        "spans": h.trace_file.read_text(),
        "metrics": "\n".join(metrics),
    }
    sentinels = {
        "provider key": PROVIDER_KEY,
        "search key": SEARCH_KEY,
        "plugin secret": PLUGIN_SECRET,
        "session token": token,
        "wrong token": WRONG_TOKEN,
    }
    found = [(what, where) for what, secret in sentinels.items() for where, text in places.items() if secret in text]
    assert found == []
    # The sweep looked at something: every place holds traffic.
    assert all(places.values()) and "/ai_bots" in places["spans"]
