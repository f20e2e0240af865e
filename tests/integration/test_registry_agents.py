"""Agents, services, plugin configuration and custom prompts through the gateway (licensed cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.identity import MANAGE_SYSTEM, Identity
from services.common.plugin_config import PluginConfigWatcher
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.registry_support import ANTHROPIC, OPENAI, call, seed_file, system_registry
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

LEGACY_BOT = {"name": "legacy", "displayName": "Legacy", "service": {"name": "Old", "type": "mistral", "apiKey": "m"}}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[ClusterHarness]:
    seed = seed_file({"defaultBotName": "legacy", "services": [OPENAI, ANTHROPIC], "bots": [LEGACY_BOT]})
    env = {"AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_INDEX_CONFIG_SEED_FILE": seed}
    async with ClusterHarness(postgres, env=env) as h:
        yield h


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(harness: ClusterHarness):  # type: ignore[no-untyped-def]
    return harness.mattermost.add_user("root", roles="system_user system_admin")


def new_agent(name: str, **fields: object) -> dict[str, object]:
    return {"displayName": name.title(), "username": name, "serviceID": OPENAI["id"], **fields}


# ---- services ---------------------------------------------------------------------------------


async def test_services_list_shows_no_secrets_and_matches_the_documented_shape(harness, admin) -> None:
    status, body, _ = await call(harness, "GET", "/services", "/services", admin)
    assert status == 200
    assert {s["id"] for s in body} >= {OPENAI["id"], ANTHROPIC["id"]}
    assert "secret" not in str(body)
    assert next(s for s in body if s["id"] == OPENAI["id"])["useResponsesAPI"] is True


async def test_a_service_missing_a_required_field_is_refused_naming_it(harness) -> None:
    stub = system_registry(harness)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateService(
            registry_pb2.CreateServiceRequest(
                service=registry_pb2.ServiceConfig(name="Azure", type="azure", api_key="k")
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "apiURL" in (err.value.details() or "")


async def test_an_unknown_service_type_is_refused(harness) -> None:
    stub = system_registry(harness)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateService(
            registry_pb2.CreateServiceRequest(service=registry_pb2.ServiceConfig(name="X", type="llama"))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "type" in (err.value.details() or "")


async def test_service_secrets_are_masked_and_a_masked_key_survives_only_an_unchanged_url(harness) -> None:
    stub = system_registry(harness)
    created = (
        await stub.CreateService(
            registry_pb2.CreateServiceRequest(
                service=registry_pb2.ServiceConfig(
                    name="Compat", type="openaicompatible", api_url="https://llm.example/v1", api_key="compat-key"
                )
            )
        )
    ).service
    assert created.api_key == "********" and created.id
    read = (await stub.GetService(registry_pb2.GetServiceRequest(id=created.id))).service
    assert read.api_key == "********"

    renamed = registry_pb2.ServiceConfig()
    renamed.CopyFrom(read)
    renamed.name = "Compat 2"
    await stub.UpdateService(registry_pb2.UpdateServiceRequest(service=renamed))
    creds = (await stub.GetServiceCredentials(registry_pb2.GetServiceCredentialsRequest(id=created.id))).service
    assert creds.api_key == "compat-key" and creds.name == "Compat 2"

    moved = registry_pb2.ServiceConfig()
    moved.CopyFrom(read)
    moved.api_url = "https://elsewhere.example/v1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateService(registry_pb2.UpdateServiceRequest(service=moved))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "apiKey" in (err.value.details() or "")


async def test_service_credentials_are_refused_to_user_calls(harness) -> None:
    stub = system_registry(harness)
    user = Identity(user_id="someone", permissions=frozenset({MANAGE_SYSTEM}))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetServiceCredentials(
            registry_pb2.GetServiceCredentialsRequest(id=OPENAI["id"]), metadata=user.to_metadata()
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_deleting_a_service_used_by_an_agent_is_refused_naming_the_agent(harness, admin) -> None:
    status, _, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("keeper"))
    assert status == 201
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await system_registry(harness).DeleteService(registry_pb2.DeleteServiceRequest(id=OPENAI["id"]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "keeper" in (err.value.details() or "")


# ---- plugin configuration -----------------------------------------------------------------------


async def test_admin_config_is_admin_only_and_masks_secrets(harness, admin) -> None:
    user = harness.mattermost.add_user("plainuser")
    status, _, _ = await call(harness, "GET", "/admin/config", "/admin/config", user)
    assert status == 403
    status, body, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    assert status == 200
    assert body["mcp"]["enabled"] is True and not body.get("bots")
    assert all(s["apiKey"] == "********" for s in body["services"])


async def test_a_saved_config_reaches_a_watcher(harness, admin) -> None:
    watcher = PluginConfigWatcher(system_registry(harness))
    await watcher.start()
    try:
        before = await watcher.wait_ready(5)
        status, body, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
        body["allowUnsafeLinks"] = not before.config.allow_unsafe_links
        status, _, _ = await harness.request("PUT", "/admin/config", user=admin, json_body=body)
        assert status == 200
        await poll(lambda: watcher.current.revision != before.revision, message="configuration change not seen")
        assert watcher.current.config.allow_unsafe_links is (not before.config.allow_unsafe_links)
        # The masked keys sent back kept the stored secrets.
        assert next(s for s in watcher.current.config.services if s.id == OPENAI["id"]).api_key == OPENAI["apiKey"]
    finally:
        await watcher.close()


async def test_ai_bots_reports_search_disabled_while_search_cannot_work(harness, admin) -> None:
    _, saved, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    searching = {**saved, "embeddingSearchConfig": {"type": "composite", "dimensions": 3}}
    # allowUnsafeLinks flipped in the same save proves /ai_bots reads the new document.
    searching["allowUnsafeLinks"] = not saved.get("allowUnsafeLinks", False)
    status, _, _ = await harness.request("PUT", "/admin/config", user=admin, json_body=searching)
    assert status == 200
    try:
        status, body = await harness.get("/ai_bots", user=admin)
        assert status == 200 and body["allowUnsafeLinks"] is searching["allowUnsafeLinks"]
        # Configured and licensed, but with no embedding provider no search can be answered.
        assert body["searchEnabled"] is False
    finally:
        status, _, _ = await harness.request("PUT", "/admin/config", user=admin, json_body=saved)
        assert status == 200


# ---- agents -----------------------------------------------------------------------------------


async def test_creating_an_agent_creates_its_bot_with_provider_defaults(harness, admin) -> None:
    status, body, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("helper"))
    assert status == 201
    bot = harness.mattermost.state.bots[body["botUserID"]]
    assert bot["username"] == "helper" and bot["display_name"] == "Helper"
    assert body["enabledNativeTools"] == ["web_search"] and body["structuredOutputEnabled"] is True
    assert body["creatorID"] == admin.id and admin.id in body["adminUserIDs"]


async def test_anthropic_agents_default_to_structured_output_without_thinking(harness, admin) -> None:
    status, body, _ = await call(
        harness, "POST", "/agents", "/agents", admin, new_agent("claude", serviceID=ANTHROPIC["id"])
    )
    assert status == 201
    assert body["structuredOutputEnabled"] is True and body["reasoningEnabled"] is False


async def test_reasoning_with_structured_output_on_anthropic_is_refused(harness, admin) -> None:
    payload = new_agent("both", serviceID=ANTHROPIC["id"], reasoningEnabled=True, structuredOutputEnabled=True)
    status, body, _ = await call(harness, "POST", "/agents", "/agents", admin, payload)
    assert status == 400 and "structured" in body["error"].lower()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"username": "Bad Name"}, "username"),
        ({"serviceID": "nope"}, "serviceID"),
        ({"channelAccessLevel": 1, "channelIDs": ["x" * 26]}, "channelIDs"),
        ({"userAccessLevel": 1, "userIDs": ["y" * 26]}, "userIDs"),
        ({"customInstructions": "x" * 20000}, "customInstructions"),
    ],
)
async def test_bad_agent_input_is_refused_with_the_field_named(harness, admin, fields, named) -> None:
    status, body, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("badinput", **fields))
    assert status == 400 and named in body["error"]


async def test_a_taken_username_is_refused_with_409(harness, admin) -> None:
    harness.mattermost.add_user("takenname")
    status, _, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("takenname"))
    assert status == 409


async def test_only_managers_edit_an_agent_and_renames_reach_the_bot(harness, admin) -> None:
    owner, other, delegate = (harness.mattermost.add_user(n) for n in ("owner1", "other1", "delegate1"))
    status, agent, _ = await call(
        harness, "POST", "/agents", "/agents", owner, new_agent("ownedbot", adminUserIDs=[delegate.id])
    )
    assert status == 201
    path = f"/agents/{agent['id']}"
    status, _, _ = await call(harness, "PUT", path, "/agents/{agentid}", other, {**agent, "displayName": "Nope"})
    assert status in (403, 404)
    status, updated, _ = await call(
        harness, "PUT", path, "/agents/{agentid}", delegate, {**agent, "displayName": "Renamed"}
    )
    assert status == 200 and updated["displayName"] == "Renamed"
    assert harness.mattermost.state.bots[agent["botUserID"]]["display_name"] == "Renamed"
    assert owner.id in updated["adminUserIDs"]


async def test_a_stale_update_gets_409_and_the_username_is_immutable(harness, admin) -> None:
    status, agent, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("racer"))
    path = f"/agents/{agent['id']}"
    status, _, _ = await call(harness, "PUT", path, "/agents/{agentid}", admin, {**agent, "model": "m1"})
    assert status == 200
    status, _, _ = await harness.request("PUT", f"{path}", user=admin, json_body={**agent, "model": "m2"})
    assert status == 409
    status, body, _ = await call(
        harness, "PUT", path, "/agents/{agentid}", admin, {**agent, "username": "other", "updateAt": 0}
    )
    assert status == 400 and "username" in body["error"]


async def test_deleting_an_agent_disables_its_bot_and_hides_it(harness, admin) -> None:
    status, agent, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("doomed"))
    status, _, _ = await call(harness, "DELETE", f"/agents/{agent['id']}", "/agents/{agentid}", admin)
    assert status == 200
    assert harness.mattermost.state.bots[agent["botUserID"]]["delete_at"] > 0
    status, _, _ = await call(harness, "GET", f"/agents/{agent['id']}", "/agents/{agentid}", admin)
    assert status == 404


async def test_a_deleted_agents_username_can_be_used_again_and_gets_its_bot_back(harness, admin) -> None:
    status, first, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("phoenix"))
    assert status == 201
    status, _, _ = await call(harness, "DELETE", f"/agents/{first['id']}", "/agents/{agentid}", admin)
    assert status == 200
    # The disabled bot still holds the username in Mattermost (as the README's re-run meets it).
    status, second, _ = await call(
        harness, "POST", "/agents", "/agents", admin, new_agent("phoenix", displayName="Phoenix Again")
    )
    assert status == 201, second
    assert second["id"] != first["id"] and second["botUserID"] == first["botUserID"]
    bot = harness.mattermost.state.bots[second["botUserID"]]
    assert bot["delete_at"] == 0 and bot["display_name"] == "Phoenix Again"


async def test_a_disabled_bot_no_agent_owned_keeps_its_username(harness, admin) -> None:
    stranger = harness.mattermost.add_user("strangerbot", is_bot=True)
    harness.mattermost.state.users[stranger.id]["delete_at"] = 1
    status, body, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("strangerbot"))
    assert status == 409, body


async def test_an_agent_whose_bot_is_gone_from_mattermost_can_still_be_deleted(harness, admin) -> None:
    status, agent, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("orphaned"))
    assert status == 201
    # As after a Mattermost reset (the sandbox's restart) or an admin deleting the bot there.
    del harness.mattermost.state.bots[agent["botUserID"]]
    status, _, _ = await call(harness, "DELETE", f"/agents/{agent['id']}", "/agents/{agentid}", admin)
    assert status == 200
    status, _, _ = await call(harness, "GET", f"/agents/{agent['id']}", "/agents/{agentid}", admin)
    assert status == 404


async def test_users_see_only_agents_they_may_use_and_instructions_only_when_managing(harness, admin) -> None:
    outsider = harness.mattermost.add_user("outsider")
    team = harness.mattermost.add_team("insiders")
    insider = harness.mattermost.add_user("insider")
    harness.mattermost.add_member(team, insider)
    payload = new_agent("teambot", userAccessLevel=1, teamIDs=[team.id], customInstructions="secret sauce")
    status, agent, _ = await call(harness, "POST", "/agents", "/agents", admin, payload)
    assert status == 201
    status, listed, _ = await call(harness, "GET", "/agents", "/agents", insider)
    assert status == 200
    mine = next(a for a in listed if a["id"] == agent["id"])
    assert mine["customInstructions"] == ""
    status, listed, _ = await call(harness, "GET", "/agents", "/agents", outsider)
    assert agent["id"] not in {a["id"] for a in listed}
    status, _, _ = await call(harness, "GET", f"/agents/{agent['id']}", "/agents/{agentid}", outsider)
    assert status == 404


async def test_agents_listed_for_a_user_are_only_those_the_user_may_use(harness, admin) -> None:
    member, stranger = harness.mattermost.add_user("listed-member"), harness.mattermost.add_user("listed-stranger")
    team = harness.mattermost.add_team("listed-team")
    for payload in (
        new_agent("listed-user", userAccessLevel=1, userIDs=[member.id]),
        new_agent("listed-team", userAccessLevel=1, teamIDs=[team.id]),
    ):
        status, _, _ = await call(harness, "POST", "/agents", "/agents", admin, payload)
        assert status == 201

    async def listed(user_id: str, team_ids: tuple[str, ...] = ()) -> set[str]:
        request = registry_pb2.ListAgentsRequest(usable_by_user_id=user_id, user_team_ids=team_ids)
        reply = await system_registry(harness).ListAgents(request, timeout=10)
        return {a.username for a in reply.agents} & {"listed-user", "listed-team"}

    assert await listed("") == {"listed-user", "listed-team"}
    assert await listed(member.id) == {"listed-user"}
    assert await listed(stranger.id, (team.id,)) == {"listed-team"}
    assert await listed(stranger.id) == set()


async def test_ai_bots_respects_the_channel_allow_list(harness, admin) -> None:
    team = harness.mattermost.add_team("chans")
    allowed = harness.mattermost.add_channel(team.id, "allowed")
    other = harness.mattermost.add_channel(team.id, "other")
    payload = new_agent("chanbot", channelAccessLevel=1, channelIDs=[allowed.id])
    status, _, _ = await call(harness, "POST", "/agents", "/agents", admin, payload)
    assert status == 201
    status, body, _ = await call(harness, "GET", f"/ai_bots?channel_id={allowed.id}", "/ai_bots", admin)
    assert "chanbot" in {b["username"] for b in body["bots"]}
    status, body, _ = await call(harness, "GET", f"/ai_bots?channel_id={other.id}", "/ai_bots", admin)
    assert "chanbot" not in {b["username"] for b in body["bots"]}


async def test_an_avatar_upload_sets_the_bot_image_and_bumps_last_icon_update(harness, admin) -> None:
    status, agent, _ = await call(harness, "POST", "/agents", "/agents", admin, new_agent("pictured"))
    form = aiohttp.FormData()
    form.add_field("image", b"\x89PNG fake", filename="a.png", content_type="image/png")
    assert harness.http is not None
    async with harness.http.post(
        f"{harness.gateway_url}{PLUGIN}/agents/{agent['id']}/avatar",
        data=form,
        headers={"Authorization": f"Bearer {admin.token}"},
    ) as resp:
        assert resp.status == 200
    assert harness.mattermost.state.profile_images[agent["botUserID"]] == b"\x89PNG fake"
    status, body = await harness.get("/ai_bots", user=admin)
    assert status == 200
    assert next(b for b in body["bots"] if b["username"] == "pictured")["lastIconUpdate"] > 0


async def test_legacy_config_bots_became_agents_without_a_creator(harness, admin) -> None:
    status, listed, _ = await call(harness, "GET", "/agents", "/agents", admin)
    legacy = next(a for a in listed if a["name"] == "legacy")
    assert legacy["creatorID"] == ""
    status, config, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    assert not config.get("bots")
    assert legacy["serviceID"] in {s["id"] for s in config["services"] if s["type"] == "mistral"}
    plain = harness.mattermost.add_user("notadmin")
    status, _, _ = await call(harness, "DELETE", f"/agents/{legacy['id']}", "/agents/{agentid}", plain)
    assert status in (403, 404)


# ---- custom prompts ---------------------------------------------------------------------------


async def test_custom_prompts_are_private_unless_shared_and_render_whitelisted_variables(harness, admin) -> None:
    alice, bob = harness.mattermost.add_user("alicep"), harness.mattermost.add_user("bobp")
    body = {"name": "Greet", "template": "Hi {{.Username}} in {{ .ChannelName }}", "is_shared": False}
    status, prompt, _ = await call(harness, "POST", "/custom-prompts", "/custom-prompts", alice, body)
    assert status == 201 and prompt["creator_id"] == alice.id
    status, listed, _ = await call(harness, "GET", "/custom-prompts", "/custom-prompts", bob)
    assert prompt["id"] not in {p["id"] for p in listed}
    status, _, _ = await call(
        harness, "PUT", f"/custom-prompts/{prompt['id']}", "/custom-prompts/{id}", bob, {**body, "name": "x"}
    )
    assert status == 404

    team = harness.mattermost.add_team("prompts")
    channel = harness.mattermost.add_channel(team.id, "town")
    harness.mattermost.add_member(team, alice)
    harness.mattermost.add_member(channel, alice)
    status, rendered, _ = await call(
        harness,
        "POST",
        f"/custom-prompts/{prompt['id']}/render",
        "/custom-prompts/{id}/render",
        alice,
        {"channel_id": channel.id},
    )
    assert status == 200 and rendered == {"rendered": "Hi alicep in town"}

    status, _, _ = await call(
        harness,
        "PUT",
        "/custom-prompts/pins",
        "/custom-prompts/pins",
        alice,
        {"prompt_id": prompt["id"], "pinned": True},
    )
    assert status == 200
    status, pins, _ = await call(harness, "GET", "/custom-prompts/pins", "/custom-prompts/pins", alice)
    assert pins == [prompt["id"]]


async def test_a_template_with_code_is_refused(harness) -> None:
    user = harness.mattermost.add_user("hacker")
    body = {"name": "Evil", "template": '{{ call .Time "x" }}'}
    status, prompt, _ = await call(harness, "POST", "/custom-prompts", "/custom-prompts", user, body)
    assert status == 201
    status, _, _ = await call(
        harness, "POST", f"/custom-prompts/{prompt['id']}/render", "/custom-prompts/{id}/render", user, {}
    )
    assert status == 400
