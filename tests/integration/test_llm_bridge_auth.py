"""Who a bridge (/bridge/v1) request acts for, in both auth modes, through the real cluster.

A plugin proves itself with something a user cannot forge (the shim's signature, or the plugin
credential the admin issued) and then acts for itself or for the user its request names, as in
the plugin. A user's own proof (session token, or the shim's signature over their id) acts as that
user, whatever ``Mattermost-Plugin-ID`` says. "alice-only" is an agent only alice may use, alone on
service "restricted"; bob must never get it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.identity import MANAGE_SYSTEM, Identity
from services.gateway.auth import sign_request
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

ADMIN = Identity(user_id="", permissions=frozenset({MANAGE_SYSTEM}))
PLUGIN_ID = "com.example.caller"
BODY = {"posts": [{"role": "user", "message": "Say hello"}]}

# Whom each caller acts for, by the user the request names: 401/403, or the user whose access
# rules apply ("" for a plugin acting for itself, which the plugin checks nothing for).
NAMED = ("nobody", "bob", "alice")
ACTS_FOR: dict[tuple[str, str], int | str] = {
    # The user's own proof without the plugin header: the bridge is for plugins.
    ("user", "nobody"): 401,
    ("user", "bob"): 401,
    ("user", "alice"): 401,
    # The same with a forged Mattermost-Plugin-ID: still bob, who may name nobody else.
    ("user+plugin-header", "nobody"): "bob",
    ("user+plugin-header", "bob"): "bob",
    ("user+plugin-header", "alice"): 403,
    # A proven plugin: for itself, or for whomever it names.
    ("plugin", "nobody"): "",
    ("plugin", "bob"): "bob",
    ("plugin", "alice"): "alice",
    ("wrong-credential", "nobody"): 401,
    ("wrong-credential", "bob"): 401,
    ("wrong-credential", "alice"): 401,
    ("no-auth", "nobody"): 401,
    ("no-auth", "bob"): 401,
    ("no-auth", "alice"): 401,
}
CASES = [pytest.param(caller, named, id=f"{caller}-names-{named}") for caller, named in ACTS_FOR]


@dataclass
class World:
    mode: str
    h: ClusterHarness
    alice: FakeUser
    bob: FakeUser
    secret: str  # the plugin's credential (session) or the shim's key (trusted_proxy)
    restricted_id: str
    open_id: str
    base_url: str = ""  # the gateway in this mode ("": the cluster's own)

    def user_id(self, named: str) -> str:
        return {"nobody": "", "bob": self.bob.id, "alice": self.alice.id}[named]

    def variants(self, caller: str, method: str, path_qs: str) -> list[dict[str, str]]:
        """The header sets that present ``caller`` in this mode (each must get the same answer)."""
        plugin = {"Mattermost-Plugin-ID": PLUGIN_ID}
        token = {"Authorization": f"Bearer {self.bob.token}"}
        if self.mode == "session":
            credential = {**plugin, "X-Agents-Plugin-Secret": self.secret}
            return {
                "user": [token],
                "user+plugin-header": [{**token, **plugin}],
                "plugin": [credential],
                "wrong-credential": [
                    # A bad credential fails even beside a valid token: no fallback to the user.
                    {**token, **plugin, "X-Agents-Plugin-Secret": secrets.token_hex(32)},
                    {**credential, "Mattermost-Plugin-ID": "com.example.other"},
                    {**plugin, "X-Agents-Plugin-Secret": ""},
                    {**plugin, "X-Agents-Plugin-Secret": "é" * 64},
                ],
                "no-auth": [plugin],
            }[caller]

        def signed(user_id: str, key: str = self.secret) -> dict[str, str]:
            stamp = str(int(time.time()))
            signature = sign_request(key, stamp, method, f"{PLUGIN}{path_qs}", user_id)
            headers = {"X-Agents-Timestamp": stamp, "X-Agents-Signature": signature}
            return {**headers, "Mattermost-User-Id": user_id} if user_id else headers

        return {
            "user": [signed(self.bob.id)],
            "user+plugin-header": [{**signed(self.bob.id), **plugin}],
            "plugin": [{**signed(""), **plugin}],
            "wrong-credential": [
                {**signed("", key="guessed"), **plugin},
                {**signed(""), **plugin, "X-Agents-Signature": "é" * 64},
                # The signature covers the user id: dropping or swapping it breaks the signature.
                {**signed(self.bob.id), **plugin, "Mattermost-User-Id": self.alice.id},
                {**signed(self.bob.id), **plugin, "Mattermost-User-Id": ""},
                # Session tokens are no proof in this mode.
                {**token, **plugin},
            ],
            "no-auth": [plugin],
        }[caller]

    async def call(
        self, caller: str, method: str, path_qs: str, body: Any = None
    ) -> list[tuple[int, Any, dict[str, str]]]:
        """Each variant's (status, JSON body or SSE events, headers)."""
        answers = []
        for headers in self.variants(caller, method, path_qs):
            status, payload, response_headers = await self.h.request(
                method, path_qs, json_body=body, headers=headers, base_url=self.base_url
            )
            if response_headers.get("Content-Type", "").startswith("text/event-stream"):
                payload = [json.loads(line[6:]) for line in payload.split("\n\n") if line.startswith("data: ")]
            answers.append((status, payload, response_headers))
        return answers


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def session_world(postgres: SessionPostgres) -> AsyncIterator[World]:
    """The module's cluster, its gateway in session mode."""
    secret = secrets.token_hex(32)
    # Licensed: user access rules and several agents need one.
    env = {
        "AGENTS_INDEX_LICENSE": "enterprise",
        "AGENTS_GATEWAY_AUTH_MODE": "session",
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"com.example.unrelated={secrets.token_hex(32)},{PLUGIN_ID}={secret}",
    }
    async with FakeOpenAI() as fake, ClusterHarness(postgres, env=env) as h:
        alice, bob = h.mattermost.add_user("alice"), h.mattermost.add_user("bob")
        async with h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            ids = []
            for name in ("restricted", "open"):
                service = registry_pb2.ServiceConfig(
                    name=name, type="openaicompatible", api_key=fake.api_key, api_url=fake.base_url
                )
                service.default_model = "gpt-4o"
                reply = await registry.CreateService(
                    registry_pb2.CreateServiceRequest(service=service), metadata=h.metadata(ADMIN), timeout=10
                )
                ids.append(reply.service.id)
            agents = (
                registry_pb2.Agent(
                    username="alice-only",
                    display_name="Alice only",
                    service_id=ids[0],
                    user_access_level=registry_pb2.ACCESS_LEVEL_ALLOW,
                    user_ids=[alice.id],
                ),
                registry_pb2.Agent(username="open", display_name="Open", service_id=ids[1]),
            )
            for agent in agents:
                await registry.CreateAgent(
                    registry_pb2.CreateAgentRequest(agent=agent), metadata=h.metadata(ADMIN), timeout=10
                )
        yield World("session", h, alice, bob, secret, *ids)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trusted_proxy_world(session_world: World) -> World:
    """A gateway in trusted_proxy mode beside the session one: the mode is the gateway's alone."""
    secret = secrets.token_hex(32)
    env = {
        "AGENTS_GATEWAY_AUTH_MODE": "trusted_proxy",
        "AGENTS_GATEWAY_PROXY_SHARED_SECRET": secret,
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": "",  # session mode's only
    }
    url = await session_world.h.start_gateway("gateway-trusted-proxy", env=env)
    return replace(session_world, mode="trusted_proxy", secret=secret, base_url=url)


@pytest.fixture(params=["session", "trusted_proxy"])
def world(request: pytest.FixtureRequest) -> World:
    world: World = request.getfixturevalue(f"{request.param}_world")
    return world


def _body(world: World, named: str) -> dict[str, Any]:
    user_id = world.user_id(named)
    return {**BODY, "user_id": user_id} if user_id else BODY


def _assert_completed(status: int, payload: Any, *, stream: bool) -> None:
    assert status == 200, payload
    if stream:
        assert [e["Type"] for e in payload][-1] == 1 and {e["Type"] for e in payload} <= {0, 1, 7}
        assert "".join(e["Value"] for e in payload if e["Type"] == 0)
    else:
        assert payload["completion"]


async def _check_completion(world: World, caller: str, named: str, path: str, template: str, *, allowed: bool) -> None:
    """``allowed``: whether the user the caller acts for may use the agent behind ``path``."""
    expected = ACTS_FOR[caller, named]
    for stream in (True, False):
        suffix = "" if stream else "/nostream"
        for status, payload, _ in await world.call(caller, "POST", path + suffix, _body(world, named)):
            if isinstance(expected, int):
                assert status == expected, payload
                assert_matches_openapi("POST", template + suffix, status, payload)
            elif allowed:
                _assert_completed(status, payload, stream=stream)
            else:
                assert status == 403 and "error" in payload, payload
                assert_matches_openapi("POST", template + suffix, 403, payload)


@pytest.mark.parametrize(("caller", "named"), CASES)
async def test_completions_from_the_agent_only_alice_may_use(world: World, caller: str, named: str) -> None:
    allowed = ACTS_FOR[caller, named] in ("", "alice")
    agent = "/bridge/v1/completion/agent/{agent}"
    await _check_completion(world, caller, named, "/bridge/v1/completion/agent/alice-only", agent, allowed=allowed)
    service = "/bridge/v1/completion/service/{service}"
    await _check_completion(world, caller, named, "/bridge/v1/completion/service/restricted", service, allowed=allowed)


@pytest.mark.parametrize(("caller", "named"), CASES)
async def test_completions_from_an_agent_everyone_may_use(world: World, caller: str, named: str) -> None:
    template = "/bridge/v1/completion/agent/{agent}"
    await _check_completion(world, caller, named, "/bridge/v1/completion/agent/open", template, allowed=True)


@pytest.mark.parametrize(("caller", "named"), CASES)
async def test_listings_show_what_the_user_acted_for_may_use(world: World, caller: str, named: str) -> None:
    expected = ACTS_FOR[caller, named]
    user_id = world.user_id(named)
    query = f"?user_id={user_id}" if user_id else ""
    everything = expected in ("", "alice")
    for path, key, field, visible in (
        ("/bridge/v1/agents", "agents", "username", ["alice-only", "open"] if everything else ["open"]),
        ("/bridge/v1/services", "services", "name", ["restricted", "open"] if everything else ["open"]),
    ):
        for status, body, _ in await world.call(caller, "GET", path + query):
            if isinstance(expected, int):
                # The plugin's document lists no 403 here (its callers are all plugins): the
                # refusal still has the documented error shape.
                assert status == expected and list(body) == ["error"], body
            else:
                assert status == 200, body
                assert_matches_openapi("GET", path, 200, body)
                assert sorted(item[field] for item in body[key]) == sorted(visible)


async def test_a_listing_for_a_user_asks_the_registry_once_whatever_the_number_of_agents(world: World) -> None:
    path = f"/bridge/v1/agents?user_id={world.alice.id}"
    trace_id = secrets.token_hex(16)
    [headers] = world.variants("plugin", "GET", path)
    headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
    status, _, _ = await world.h.request("GET", path, headers=headers, base_url=world.base_url)
    assert status == 200

    def gateway(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [s for s in spans if s["trace_id"] == trace_id and s["service"] == "gateway"]

    # The request's server span ends after every call it made.
    spans = gateway(await world.h.wait_for_spans(lambda spans: any(s["kind"] == "SERVER" for s in gateway(spans))))
    asked = [s["name"].rsplit("/", 1)[-1] for s in spans if s["kind"] == "CLIENT" and "Registry" in s["name"]]
    assert asked.count("ListAgents") == 1 and "CheckAgentAccess" not in asked, asked


async def test_the_plugin_credential_never_reaches_a_response_or_a_log(world: World) -> None:
    path = "/bridge/v1/completion/agent/open/nostream"
    for caller in ("plugin", "wrong-credential"):
        for _, payload, _ in await world.call(caller, "POST", path, BODY):
            assert world.secret not in json.dumps(payload)
    assert not [line for lines in world.h.logs.values() for line in lines if world.secret in line]
