"""The fake Mattermost (and so the client tested against it) agrees with Mattermost's OpenAPI spec.

One scenario drives every route the fake serves through ``MattermostClient`` (successes and the
usual failures); each recorded exchange is then checked against the spec: the route and method
exist, the status is documented, the request body and the response body validate against their
schemas ($refs resolved in the spec), and the fake sends no field the spec does not declare beyond
a short list the real server is known to add. The WebSocket protocol is checked frame by frame.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient, Post
from tests.contract.openapi import reference_dir
from tests.fakes.mattermost import FakeMattermost, RecordedRequest

# Statuses the real server answers but the spec does not list (a 404 from a store lookup).
UNDOCUMENTED_STATUSES = {
    ("GET", "/api/v4/channels/{channel_id}/members/{user_id}", 404),
    ("GET", "/api/v4/posts/{post_id}", 404),
}
# Fields the real server sends that the spec's schemas do not declare.
KNOWN_EXTRA_FIELDS = {
    "User": {"position", "is_bot"},
    "AppError": {"detailed_error"},
}
# Request fields the spec types differently from what the server parses (model.Post.props is a map).
REQUEST_SCHEMA_FIXES = {("PUT", "/api/v4/posts/{post_id}"): {"props": {"type": "object"}}}


@functools.cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI document, parsed once per test process (it is 830 KB)."""
    path = reference_dir() / "mattermost-v4.yaml"
    if not path.is_file():
        pytest.fail(f"Mattermost OpenAPI spec not found at {path}: it is vendored in the repository")
    with path.open("rb") as handle:
        return yaml.load(handle, Loader=yaml.CSafeLoader)


def resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Follow a local ``$ref``; returns the target and the component name it came from."""
    name = None
    while "$ref" in node:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        target: Any = load_spec()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node, name


def operation(method: str, route: str) -> dict[str, Any]:
    """The spec's operation object for a method and path template."""
    return load_spec()["paths"][route][method.lower()]


def response_schema(method: str, route: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a documented response, AppError for known undocumented ones."""
    responses = operation(method, route)["responses"]
    if str(status) not in responses:
        assert (method, route, status) in UNDOCUMENTED_STATUSES, f"{method} {route} answered undocumented {status}"
        return {"$ref": "#/components/schemas/AppError"}
    response, _ = resolve(responses[str(status)])
    return response.get("content", {}).get("application/json", {}).get("schema")


def validate(schema: dict[str, Any], value: Any) -> list[str]:
    """Schema errors of ``value``, with $refs resolved against the spec's components."""
    root = {"allOf": [schema], "components": load_spec()["components"]}
    validator = jsonschema.Draft4Validator(root)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]


def undeclared(schema: dict[str, Any], value: Any, where: str, name: str | None = None) -> list[str]:
    """Keys of ``value`` that no ``properties`` of the schema declare (recursively)."""
    schema, ref_name = resolve(schema)
    name = ref_name or name
    properties: dict[str, Any] = {}
    for part in [schema, *schema.get("allOf", [])]:
        properties.update(resolve(part)[0].get("properties", {}))
    found: list[str] = []
    if isinstance(value, dict):
        if properties:
            extra = set(value) - set(properties) - KNOWN_EXTRA_FIELDS.get(name or "", set())
            found += [f"{where}.{key} ({name})" for key in sorted(extra)]
            for key, item in value.items():
                if key in properties:
                    found += undeclared(properties[key], item, f"{where}.{key}")
        extra_schema = schema.get("additionalProperties")
        if isinstance(extra_schema, dict):
            for key, item in value.items():
                found += undeclared(extra_schema, item, f"{where}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += undeclared(schema["items"], item, f"{where}[{index}]")
    return found


async def _expect_error(call: Any) -> None:
    with pytest.raises(DomainError):
        await call


async def run_scenario(mm: FakeMattermost) -> None:
    """Call every route through the client, with the failures callers meet most."""
    admin = mm.add_user("admin", roles="system_admin system_user")
    alice, bob = mm.add_user("alice"), mm.add_user("bob")
    team = mm.add_team("eng")
    town, secret = mm.add_channel(team.id, "town-square"), mm.add_channel(team.id, "secret", type="P")
    for user in (alice, bob):
        mm.add_member(team, user)
        mm.add_member(town, user)
    mm.add_member(secret, alice)
    info = mm.add_file(alice, "a.txt", b"hello")
    mm.add_post(alice, town, "with file", file_ids=[info["id"]])
    fast = {"retry_initial_wait": 0.001, "retry_max_wait": 0.01}
    async with (
        MattermostClient(mm.url, admin.token, **fast) as as_admin,  # type: ignore[arg-type]
        MattermostClient(mm.url, alice.token, **fast) as as_alice,  # type: ignore[arg-type]
        MattermostClient(mm.url, bob.token, **fast) as as_bob,  # type: ignore[arg-type]
        MattermostClient(mm.url, "bad-token", **fast) as anonymous,  # type: ignore[arg-type]
    ):
        await as_alice.ping()
        assert await as_alice.get_client_license() == {"IsLicensed": "false"}
        mm.set_license("enterprise")
        assert (await as_alice.get_client_license())["SkuShortName"] == "enterprise"
        assert (await as_alice.get_client_config())["BuildEnterpriseReady"] == "false"
        await as_alice.get_me()
        await _expect_error(anonymous.get_me())
        await as_alice.get_user(bob.id)
        await _expect_error(as_alice.get_user("nosuchuser"))
        await as_alice.get_user_by_username("bob")
        await _expect_error(as_alice.get_user_by_username("nobody"))
        await as_alice.get_users_by_ids([bob.id, admin.id])
        await as_alice.search_users("b", limit=5, team_id=team.id)
        await as_alice.get_team(team.id)
        await as_alice.get_team_member(team.id, bob.id)
        await as_alice.get_team_member(team.id, admin.id)
        await _expect_error(as_alice.get_user_teams(bob.id))
        await as_alice.get_user_teams(alice.id)
        await as_alice.get_channel(town.id)
        await _expect_error(as_bob.get_channel(secret.id))
        await as_alice.get_channel_member(secret.id, alice.id)
        await as_alice.get_channel_member(secret.id, bob.id)
        await as_alice.get_channels_for_user(alice.id, team.id)
        await as_alice.get_team_members(team.id, per_page=10)
        await _expect_error(anonymous.get_team_members(team.id))
        await as_alice.get_channel_members(town.id)
        await _expect_error(as_bob.get_channel_members(secret.id))
        launch = await as_alice.create_channel(team.id, "launch", "Launch", "P", purpose="ship it")
        await _expect_error(as_alice.create_channel(team.id, "launch", "Again"))
        await _expect_error(as_admin.create_channel(team.id, "Bad Name!", "Bad"))
        await as_alice.add_channel_member(launch.id, bob.id)
        await _expect_error(as_bob.add_channel_member(secret.id, bob.id))
        dm = await as_alice.get_or_create_direct_channel(alice.id, bob.id)
        assert dm.id in {c.id for c in await as_admin.get_all_channels_for_user(alice.id)}
        await _expect_error(as_bob.get_all_channels_for_user(alice.id))
        assert {alice.id, bob.id} <= {u.id for u in await as_admin.get_users(0, 200)}
        root = await as_alice.create_post(town.id, "question", props={"a": 1})
        await _expect_error(as_bob.create_post(secret.id, "no"))
        reply = await as_bob.create_post(town.id, "answer", root_id=root.id, type="custom_llmbot")
        await as_bob.create_post(dm.id, "dm")
        await as_alice.get_post(reply.id)
        await _expect_error(as_alice.get_post("nosuchpost"))
        await as_alice.get_post_thread(root.id)
        await as_alice.get_channel_posts(town.id, page=0, per_page=10)
        await as_alice.get_channel_posts(town.id, since=root.create_at)
        newest = await as_alice.get_posts_before(town.id, per_page=1)
        await as_alice.get_posts_before(town.id, before=newest[0].id, per_page=10)
        assert town.id in {c.id for c in await as_admin.get_all_channels(0, 10)}
        await as_alice.search_posts(team.id, "question")
        patched = await as_bob.patch_post(reply.id, message="better", props={"b": 2})
        await _expect_error(as_alice.patch_post(reply.id, message="mine now"))
        await as_bob.update_post(Post(id=patched.id, channel_id=town.id, user_id=bob.id, message="final"))
        await as_bob.add_reaction(bob.id, root.id, "thumbsup")
        doomed = await as_bob.create_post(town.id, "oops")
        await _expect_error(as_alice.delete_post(doomed.id))
        await as_bob.delete_post(doomed.id)
        await as_alice.get_file_info(info["id"])
        await as_alice.get_file(info["id"])
        uploaded = await as_alice.upload_file(town.id, "notes.vtt", b"WEBVTT\n", "text/vtt")
        await as_alice.create_post(town.id, "notes", file_ids=[uploaded.id])
        await _expect_error(as_bob.upload_file(secret.id, "no.txt", b"no"))
        await _expect_error(as_alice.get_file_info("nosuchfile"))
        bot = await as_admin.create_bot("helper", "Helper", "helps")
        await _expect_error(as_admin.create_bot("helper"))
        await _expect_error(as_alice.create_bot("mine"))
        await as_admin.get_bot(bot.user_id)
        await as_admin.patch_bot(bot.user_id, username="helper", display_name="Helper 2")
        await as_admin.set_profile_image(bot.user_id, b"\x89PNG", "avatar.png")
        await as_admin.disable_bot(bot.user_id)
        await as_admin.enable_bot(bot.user_id)
        pat = await as_admin.create_user_access_token(bot.user_id, "gateway")
        await _expect_error(as_alice.create_user_access_token(bob.id, "not mine"))
        await _expect_error(as_admin.create_user_access_token(bot.user_id, ""))
        async with MattermostClient(mm.url, pat.token, **fast) as as_bot:  # type: ignore[arg-type]
            await as_bot.get_me()
        await _expect_error(as_alice.revoke_user_access_token(pat.id))
        await as_admin.revoke_user_access_token(pat.id)
        await _expect_error(as_admin.revoke_user_access_token(pat.id))


@pytest.fixture(scope="module")
async def exchanges() -> AsyncIterator[tuple[set[tuple[str, str]], list[RecordedRequest]]]:
    async with FakeMattermost() as mm:
        await run_scenario(mm)
        yield mm.routes(), list(mm.requests)


def test_every_route_of_the_fake_is_in_the_spec(exchanges: Any) -> None:
    routes, _ = exchanges
    missing = [
        (method, route)
        for method, route in sorted(routes)
        if route != "/api/v4/websocket" and method.lower() not in load_spec()["paths"].get(route, {})
    ]
    assert missing == []


def test_the_scenario_exercises_every_rest_route(exchanges: Any) -> None:
    routes, recorded = exchanges
    exercised = {(r.method, r.route) for r in recorded}
    assert routes - exercised == {("GET", "/api/v4/websocket")}


def test_every_response_status_and_body_matches_the_spec(exchanges: Any) -> None:
    _, recorded = exchanges
    problems: list[str] = []
    for exchange in recorded:
        schema = response_schema(exchange.method, exchange.route, exchange.status)
        if schema is None:
            continue
        assert exchange.response_json is not None, f"{exchange.method} {exchange.path}: no JSON body"
        for error in validate(schema, exchange.response_json):
            problems.append(f"{exchange.method} {exchange.route} {exchange.status}: {error}")
    assert problems == []
    statuses = {r.status for r in recorded}
    assert {200, 201, 400, 401, 403, 404} <= statuses


def test_the_fake_sends_only_fields_the_spec_declares(exchanges: Any) -> None:
    _, recorded = exchanges
    problems: list[str] = []
    for exchange in recorded:
        schema = response_schema(exchange.method, exchange.route, exchange.status)
        if schema is not None:
            where = f"{exchange.method} {exchange.route} {exchange.status}"
            problems += undeclared(schema, exchange.response_json, where)
    assert problems == []


def test_every_request_body_the_client_sends_matches_the_spec(exchanges: Any) -> None:
    _, recorded = exchanges
    problems: list[str] = []
    for exchange in recorded:
        body = operation(exchange.method, exchange.route).get("requestBody")
        if exchange.json is None:
            assert body is None or "application/json" not in body["content"], f"{exchange.path}: no body sent"
            continue
        schema = dict(body["content"]["application/json"]["schema"])
        fixes = REQUEST_SCHEMA_FIXES.get((exchange.method, exchange.route))
        if fixes:
            schema["properties"] = {**schema["properties"], **fixes}
        problems += [f"{exchange.method} {exchange.route}: {e}" for e in validate(schema, exchange.json)]
    assert problems == []


def test_multipart_image_upload_uses_the_spec_field_name(exchanges: Any) -> None:
    required = operation("POST", "/api/v4/users/{user_id}/image")["requestBody"]["content"]["multipart/form-data"]
    assert required["schema"]["required"] == ["image"]
    _, recorded = exchanges
    assert any(r.route == "/api/v4/users/{user_id}/image" and r.status == 200 for r in recorded)


# --- WebSocket protocol (documented in the spec's WebSocket tag) -------------------------------


@pytest.fixture
async def mm() -> AsyncIterator[FakeMattermost]:
    async with FakeMattermost() as fake:
        yield fake


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_websocket_authentication_challenge_then_hello(mm: FakeMattermost) -> None:
    alice = mm.add_user("alice")
    async with aiohttp.ClientSession() as session, session.ws_connect(mm.url + "/api/v4/websocket") as ws:
        await ws.send_json({"seq": 1, "action": "authentication_challenge", "data": {"token": "wrong"}})
        failed = await _frame(ws)
        assert (failed["status"], failed["seq_reply"]) == ("FAIL", 1) and failed["error"]["id"]
        await ws.send_json({"seq": 2, "action": "authentication_challenge", "data": {"token": alice.token}})
        assert await _frame(ws) == {"status": "OK", "seq_reply": 2}
        hello = await _frame(ws)
        assert (hello["event"], hello["seq"], hello["broadcast"]["user_id"]) == ("hello", 0, alice.id)
        assert hello["data"]["server_version"]
        await ws.send_json({"seq": 3, "action": "ping"})
        assert (await _frame(ws))["seq_reply"] == 3


async def test_websocket_rejects_a_bad_authorization_header_before_upgrading(mm: FakeMattermost) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(mm.url + "/api/v4/websocket", headers={"Authorization": "Bearer nope"})
    assert caught.value.status == 401


async def test_posted_event_carries_a_spec_post_as_a_json_string(mm: FakeMattermost) -> None:
    alice, bob, outsider = mm.add_user("alice"), mm.add_user("bob"), mm.add_user("eve")
    team = mm.add_team("eng")
    channel = mm.add_channel(team.id, "town")
    mm.add_member(channel, alice)
    mm.add_member(channel, bob)
    headers = {"Authorization": f"Bearer {bob.token}"}
    outsider_headers = {"Authorization": f"Bearer {outsider.token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(mm.url + "/api/v4/websocket", headers=headers) as ws,
        session.ws_connect(mm.url + "/api/v4/websocket", headers=outsider_headers) as outsider_ws,
    ):
        assert (await _frame(ws))["event"] == "hello"
        assert (await _frame(outsider_ws))["event"] == "hello"
        await mm.user_posts(alice, channel, "hey @bob")
        posted = await _frame(ws)
        assert (posted["event"], posted["seq"], posted["broadcast"]["channel_id"]) == (
            "posted",
            1,
            channel.id,
        )
        assert isinstance(posted["data"]["post"], str)
        post = json.loads(posted["data"]["post"])
        assert validate({"$ref": "#/components/schemas/Post"}, post) == []
        assert undeclared({"$ref": "#/components/schemas/Post"}, post, "post") == []
        assert json.loads(posted["data"]["mentions"]) == [bob.id]
        assert (posted["data"]["channel_type"], posted["data"]["sender_name"]) == ("O", "@alice")
        # Events go to channel members only: the outsider's next frame is the ping reply.
        await outsider_ws.send_json({"seq": 1, "action": "ping"})
        assert (await _frame(outsider_ws)).get("seq_reply") == 1
