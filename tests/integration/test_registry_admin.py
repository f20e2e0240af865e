"""Model listing, the admin configuration's shape, GET /ai_bots' DM ids and the legacy migration
across a restart, through the gateway against real processes, a fake Mattermost and FakeOpenAI."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.cluster.supervisor import free_port
from services.common.identity import Identity
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.harness import ClusterHarness, SessionPostgres, wait_serving
from tests.integration.registry_support import OPENAI, call, seed_file
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

LEGACY_BOTS = [
    {"name": "oldtimer", "displayName": "Old Timer", "service": {"name": "Old", "type": "mistral", "apiKey": "m"}},
    {"name": "veteran", "displayName": "Veteran", "serviceID": OPENAI["id"]},
]


@dataclass
class Admin:
    h: ClusterHarness
    fake: FakeOpenAI
    root: FakeUser
    compat_id: str = "svc-compat"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[Admin]:
    async with FakeOpenAI() as fake:
        compat = {"id": "svc-compat", "name": "Compat", "type": "openaicompatible"}
        compat |= {"apiKey": fake.api_key, "apiURL": fake.base_url}
        seed = seed_file({"defaultBotName": "veteran", "services": [OPENAI, compat], "bots": LEGACY_BOTS})
        env = {
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_INDEX_CONFIG_SEED_FILE": seed,
            # Far longer than any wait below: a change seen in time was pushed, not expired.
            "AGENTS_INDEX_AGENTS_CACHE_SECONDS": "300",
        }
        async with ClusterHarness(postgres, env=env) as h:
            world = Admin(h, fake, h.mattermost.add_user("root", roles="system_user system_admin"))
            await _until_llm_reaches_its_peers(world)
            yield world


async def _until_llm_reaches_its_peers(world: Admin, within: float = 20.0) -> None:
    """Every process reports healthy before its channels to the others are up (they start together
    and back off while a peer is not listening yet): wait until a listing goes all the way through."""

    async def listed() -> bool:
        status, body, _ = await world.h.request(
            "POST", "/agents/models/fetch", user=world.root, json_body={"serviceID": world.compat_id}
        )
        assert status in (200, 503), f"models listing failed: {status} {body}"
        return status == 200

    await poll(listed, within=within, interval=0.1, message="models listing never worked: still 503")


def model_ids(body: Any) -> list[str]:
    return [m["id"] for m in body]


# ---- POST /agents/models/fetch (a saved service, the services permission) -----------------------


async def test_agent_managers_list_the_models_of_a_saved_service(world: Admin) -> None:
    user = world.h.mattermost.add_user("maker")
    body = {"serviceID": world.compat_id}
    status, models, _ = await call(world.h, "POST", "/agents/models/fetch", "/agents/models/fetch", user, body)
    assert status == 200 and model_ids(models) == list(world.fake.models)
    # The stored key reached the provider; the caller never saw it.
    assert world.fake.requests[-1].headers.get("Authorization") == f"Bearer {world.fake.api_key}"


async def test_guests_may_not_list_the_models_of_a_service(world: Admin) -> None:
    guest = world.h.mattermost.add_user("visitor", roles="system_guest")
    body = {"serviceID": world.compat_id}
    status, _, _ = await call(world.h, "POST", "/agents/models/fetch", "/agents/models/fetch", guest, body)
    assert status == 403


async def test_listing_the_models_of_an_unknown_service_is_refused(world: Admin) -> None:
    status, body, _ = await world.h.request(
        "POST", "/agents/models/fetch", user=world.root, json_body={"serviceID": "x"}
    )
    assert status == 404 and "x" in body["error"]


# ---- POST /admin/models/fetch (unsaved credentials, admins only) --------------------------------


async def test_admins_list_models_with_unsaved_credentials(world: Admin) -> None:
    body = {"serviceType": "openaicompatible", "apiKey": world.fake.api_key, "apiURL": world.fake.base_url}
    status, models, _ = await call(world.h, "POST", "/admin/models/fetch", "/admin/models/fetch", world.root, body)
    assert status == 200 and model_ids(models) == list(world.fake.models)


async def test_listing_models_with_unsaved_credentials_is_for_admins_only(world: Admin) -> None:
    user = world.h.mattermost.add_user("curious")
    body = {"serviceType": "openaicompatible", "apiKey": world.fake.api_key, "apiURL": world.fake.base_url}
    status, _, _ = await call(world.h, "POST", "/admin/models/fetch", "/admin/models/fetch", user, body)
    assert status == 403


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({"apiKey": "k"}, "serviceType"),
        ({"serviceType": "openaicompatible", "orgID": "o"}, "apiKey or apiURL"),
        ({"serviceType": "vertex", "region": "us-central1"}, "vertexProjectID"),
        ({"serviceType": "vertex", "vertexProjectID": "p"}, "region"),
        ({"serviceType": "anthropic", "apiURL": "https://api.anthropic.com"}, "apiKey"),
    ],
)
async def test_missing_credentials_for_model_listing_are_refused_naming_the_field(
    world: Admin, credentials: dict[str, str], named: str
) -> None:
    before = len(world.fake.requests)
    status, body, _ = await call(world.h, "POST", "/admin/models/fetch", "/admin/models/fetch", world.root, credentials)
    assert status == 400 and named in body["error"]
    assert len(world.fake.requests) == before


# ---- GET /admin/config ------------------------------------------------------------------------


async def test_admin_config_always_carries_every_section_of_the_plugin_document(world: Admin) -> None:
    status, config, _ = await call(world.h, "GET", "/admin/config", "/admin/config", world.root)
    assert status == 200
    # The seed set none of these; the plugin's Go structs still serialise them, and the console reads them.
    assert config["embeddingSearchConfig"]["type"] == ""
    assert config["embeddingSearchConfig"]["chunkingOptions"]["chunkSize"] == 0
    assert config["webSearch"]["brave"]["apiKey"] == "" and config["webSearch"]["google"]["searchEngineId"] == ""
    assert config["mcp"]["embeddedServer"]["enabled"] is True


@pytest.mark.parametrize(
    "fallbacks",
    [
        {"svc-compat": "svc-compat"},
        {"svc-compat": "svc-openai", "svc-openai": "svc-compat"},
    ],
    ids=["itself", "a-b-a"],
)
async def test_a_fallback_cycle_is_refused_naming_the_field(world: Admin, fallbacks: dict[str, str]) -> None:
    _, config, _ = await call(world.h, "GET", "/admin/config", "/admin/config", world.root)
    for service in config["services"]:
        service["fallbackServiceID"] = fallbacks.get(service["id"], "")
    status, body, _ = await call(world.h, "PUT", "/admin/config", "/admin/config", world.root, config)
    assert status == 400 and "fallbackServiceID" in body["error"] and "cycle" in body["error"]
    _, after, _ = await call(world.h, "GET", "/admin/config", "/admin/config", world.root)
    assert all(not s.get("fallbackServiceID") for s in after["services"])


# ---- GET /ai_bots dmChannelID -----------------------------------------------------------------


async def test_ai_bots_gives_the_id_of_an_existing_dm_with_the_bot(world: Admin) -> None:
    mm = world.h.mattermost
    user = mm.add_user("chatty")
    veteran = next(bot for bot in mm.state.bots.values() if bot["username"] == "veteran")
    dm = mm.add_direct_channel(user, FakeUser(id=veteran["user_id"], username="veteran", token=""))
    status, body, _ = await call(world.h, "GET", "/ai_bots", "/ai_bots", user)
    assert status == 200
    bots = {b["username"]: b for b in body["bots"]}
    assert bots["veteran"]["dmChannelID"] == dm.id


async def test_ai_bots_leaves_dm_channel_id_empty_and_creates_no_channel(world: Admin) -> None:
    mm = world.h.mattermost
    user = mm.add_user("shy")
    channels_before = len(mm.state.channels)
    status, body, _ = await call(world.h, "GET", "/ai_bots", "/ai_bots", user)
    assert status == 200 and body["bots"]
    assert {b["dmChannelID"] for b in body["bots"]} == {""}
    assert len(mm.state.channels) == channels_before
    assert not [r for r in mm.requests if r.route == "/api/v4/channels/direct"]


# ---- the legacy config.bots migration --------------------------------------------------------


async def _agents(world: Admin) -> list[dict[str, Any]]:
    status, listed, _ = await call(world.h, "GET", "/agents", "/agents", world.root)
    assert status == 200
    return listed


async def test_the_legacy_bots_migration_runs_once_across_an_index_restart(world: Admin) -> None:
    legacy = {b["name"] for b in LEGACY_BOTS}
    before = [a for a in await _agents(world) if a["name"] in legacy]
    assert {a["name"] for a in before} == legacy and all(a["creatorID"] == "" for a in before)
    bots_before = dict(world.h.mattermost.state.bots)
    cluster = world.h.cluster
    assert cluster is not None
    # Same environment, same seed file: a second start must find nothing left to migrate.
    await cluster.stop_service("index")
    await cluster.start_service("index")
    await cluster.wait_healthy(names=("index",), timeout=60)

    async def listed() -> tuple[list[dict[str, Any]]] | None:
        status, agents, _ = await world.h.request("GET", "/agents", user=world.root)
        return (agents,) if status == 200 else None

    (agents,) = await poll(listed, within=15, interval=0.05, message="the gateway never reached the restarted registry")
    after = [a for a in agents if a["name"] in legacy]
    assert sorted((a["id"], a["botUserID"]) for a in after) == sorted((a["id"], a["botUserID"]) for a in before)
    assert world.h.mattermost.state.bots == bots_before
    _, config, _ = await call(world.h, "GET", "/admin/config", "/admin/config", world.root)
    assert "bots" not in config or not config["bots"]
    assert sum(1 for s in config["services"] if s["type"] == "mistral") == 1


# ---- the in-process agent list across replicas ------------------------------------------------


async def _usable_on(address: str, world: Admin, user: FakeUser) -> set[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await registry_pb2_grpc.RegistryStub(channel).ListUsableAgents(
            registry_pb2.ListUsableAgentsRequest(), metadata=world.h.metadata(Identity(user_id=user.id)), timeout=5
        )
    return {a.username for a in reply.agents}


async def _access_on(
    address: str, world: Admin, agent_id: str, user: FakeUser
) -> registry_pb2.CheckAgentAccessResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        return await registry_pb2_grpc.RegistryStub(channel).CheckAgentAccess(
            registry_pb2.CheckAgentAccessRequest(agent_id=agent_id, user_id=user.id, is_direct_message=True),
            metadata=world.h.metadata(Identity(user_id="")),
            timeout=5,
        )


async def test_an_agent_saved_through_one_replica_is_listed_and_checked_by_another(world: Admin) -> None:
    cluster = world.h.cluster
    assert cluster is not None
    port = free_port()
    env = {**cluster.environment(), "AGENTS_INDEX_GRPC_PORT": str(port)}
    replica = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.index",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_serving(port)
        address, user = f"127.0.0.1:{port}", world.h.mattermost.add_user("onlooker")
        assert "newcomer" not in await _usable_on(address, world, user)  # the replica now holds the list
        body = {"displayName": "Newcomer", "username": "newcomer", "serviceID": OPENAI["id"]}
        status, agent, _ = await call(world.h, "POST", "/agents", "/agents", world.root, body)
        assert status == 201

        async def listed() -> bool:
            return "newcomer" in await _usable_on(address, world, user)

        await poll(listed, message="the other replica kept serving its old agent list")
        assert (await _access_on(address, world, agent["id"], user)).allowed
        # The agent lookup and access check of every answer read the same in-process list: a
        # block saved through one replica holds on the other at once, not after a cache expiry.
        blocked = {**agent, "userAccessLevel": 2, "userIDs": [user.id]}
        status, _, _ = await call(world.h, "PUT", f"/agents/{agent['id']}", "/agents/{agentid}", world.root, blocked)
        assert status == 200

        async def refused() -> bool:
            return not (await _access_on(address, world, agent["id"], user)).allowed

        await poll(refused, within=2, message="the other replica kept allowing a blocked user")
        async with grpc.aio.insecure_channel(address) as channel:
            seen = await registry_pb2_grpc.RegistryStub(channel).GetAgent(
                registry_pb2.GetAgentRequest(id=agent["id"]), metadata=world.h.metadata(Identity(user_id="")), timeout=5
            )
        assert list(seen.agent.user_ids) == [user.id]
    finally:
        replica.send_signal(signal.SIGTERM)
        await asyncio.wait_for(replica.wait(), 30)
