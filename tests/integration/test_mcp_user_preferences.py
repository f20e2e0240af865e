"""The user's MCP tool preferences (the RHS tools popover): ``/mcp/user-preferences`` stored in
the registry, and honoured when the tools service lists and runs an agent's tools."""

from __future__ import annotations

import grpc
import pytest
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.identity import Identity
from tests.contract.openapi import assert_matches_openapi
from tests.integration import test_mcp_remote
from tests.integration.test_mcp_remote import World, new_agent

world = test_mcp_remote.world  # the same cluster, servers and users (this module gets its own)

pytestmark = pytest.mark.asyncio(loop_scope="session")

PATH = "/mcp/user-preferences"


async def test_preferences_are_stored_normalised_per_user(world: World) -> None:
    ann, ben = world.user("pref-ann"), world.user("pref-ben")
    status, body = await world.h.get(PATH, user=ann)
    assert (status, body) == (200, {"disabled_servers": []})
    sent = {"disabled_servers": [f" {world.wiki.url} ", "", world.jira.url, world.wiki.url]}
    status, body, _ = await world.h.request("PUT", PATH, user=ann, json_body=sent)
    assert status == 200, body
    assert_matches_openapi("PUT", PATH, 200, body)
    assert body == {"disabled_servers": sorted([world.jira.url, world.wiki.url])}
    status, body = await world.h.get(PATH, user=ann)
    assert_matches_openapi("GET", PATH, 200, body)
    assert body == {"disabled_servers": sorted([world.jira.url, world.wiki.url])}
    assert await world.h.get(PATH, user=ben) == (200, {"disabled_servers": []})
    # An empty object turns everything back on.
    status, body, _ = await world.h.request("PUT", PATH, user=ann, json_body={})
    assert (status, body) == (200, {"disabled_servers": []})


@pytest.mark.parametrize(
    ("username", "sent", "says"),
    [
        ("pref-many", {"disabled_servers": [f"s{i}" for i in range(257)]}, "disabled_servers holds at most 256"),
        ("pref-long", {"disabled_servers": ["x" * 513]}, "disabled_servers is at most 512"),
        ("pref-text", {"disabled_servers": "jira"}, "disabled_servers must be a list"),
        ("pref-nums", {"disabled_servers": [1]}, "disabled_servers must be a list"),
        ("pref-list", ["jira"], "must be a JSON object"),
    ],
)
async def test_bad_preferences_are_refused_with_400_naming_the_field(
    world: World, username: str, sent: object, says: str
) -> None:
    status, body, _ = await world.h.request("PUT", PATH, user=world.user(username), json_body=sent)
    assert status == 400, body
    assert says in body["error"]


async def test_a_body_over_256_kib_is_refused_with_413(world: World) -> None:
    status, _, _ = await world.h.request(
        "PUT", PATH, user=world.user("pref-big"), data='{"disabled_servers": ["' + "x" * 300_000 + '"]}'
    )
    assert status == 413


async def test_a_server_the_user_turned_off_is_neither_offered_nor_run(world: World) -> None:
    cora = world.user("pref-cora")
    agent = await new_agent(world, "prefs", cora, autoenablenewmcptools=True)
    assert {"echo", "fail", "read_post"} <= set(await agent.list_tools())
    turned_off = {"disabled_servers": [world.jira.url, "embedded://mattermost"]}
    status, body, _ = await world.h.request("PUT", PATH, user=cora, json_body=turned_off)
    assert status == 200, body
    tools = await agent.list_tools()
    # jira's tools are gone, so wiki's echo is offered instead; built-in Mattermost tools are off too.
    assert tools["echo"].server_origin == world.wiki.url
    assert "add" not in tools and "read_post" not in tools
    calls = world.jira.methods["tools/call"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.execute("add", {"a": 1, "b": 2})
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert world.jira.methods["tools/call"] == calls
    # Another user's agent with the same settings still gets everything.
    other = await new_agent(world, "prefs-other", world.user("pref-dan"), autoenablenewmcptools=True)
    assert (await other.list_tools())["echo"].server_origin == world.jira.url


async def test_a_cluster_service_acting_for_one_user_reads_another_users_preferences(world: World) -> None:
    # The tools service lists a user's tools for whichever service asks, which may act for someone else.
    eve, fred = world.user("pref-eve"), world.user("pref-fred")
    status, body, _ = await world.h.request("PUT", PATH, user=fred, json_body={"disabled_servers": [world.wiki.url]})
    assert status == 200, body
    async with world.h.channel("index") as channel:
        reply = await registry_pb2_grpc.RegistryStub(channel).GetUserToolPreferences(
            registry_pb2.GetUserToolPreferencesRequest(user_id=fred.id),
            metadata=world.h.metadata(Identity(user_id=eve.id)),
            timeout=10,
        )
    assert list(reply.preferences.disabled_servers) == [world.wiki.url]
