"""Fake REST handlers for system, users, teams and channels (spec paths under ``/api/v4``)."""

from __future__ import annotations

import re

from aiohttp import web

from tests.fakes.mattermost.context import answer, ctx, read_json
from tests.fakes.mattermost.state import JSON, FakeError, bad_request, forbidden, not_found

# --- system, users ------------------------------------------------------------------------------


async def ping(request: web.Request) -> web.Response:
    return answer({"status": "OK", "database_status": "OK", "filestore_status": "OK"})


def _old_format(request: web.Request) -> None:
    # The only format the server implements; without it the server answers 400 (501 for others).
    if request.query.get("format") != "old":
        raise bad_request("format")


async def get_client_license(request: web.Request) -> web.Response:
    _old_format(request)
    state, _ = ctx(request)
    return answer(dict(state.client_license))


async def get_client_config(request: web.Request) -> web.Response:
    _old_format(request)
    state, _ = ctx(request)
    return answer(dict(state.client_config))


async def get_user(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id = request.match_info["user_id"]
    return answer(state.snapshot(state.user(me if user_id == "me" else user_id)))


async def get_user_by_username(request: web.Request) -> web.Response:
    state, _ = ctx(request)
    name = request.match_info["username"]
    for user in state.users.values():
        if user["username"] == name:
            return answer(state.snapshot(user))
    raise not_found("user")


async def get_users_by_ids(request: web.Request) -> web.Response:
    state, _ = ctx(request)
    ids = await read_json(request)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise bad_request("user_ids")
    return answer([state.snapshot(state.users[i]) for i in dict.fromkeys(ids) if i in state.users])


async def get_users(request: web.Request) -> web.Response:
    """``GetUsers``: every user (bots and deactivated ones too), by username, paged (per_page up to 200)."""
    state, _ = ctx(request)
    page, per_page = int(request.query.get("page", 0)), min(int(request.query.get("per_page", 60)), 200)
    users = sorted(state.users.values(), key=lambda u: u["username"])
    return answer([state.snapshot(u) for u in users[page * per_page : (page + 1) * per_page]])


async def search_users(request: web.Request) -> web.Response:
    state, _ = ctx(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("term"), str):
        raise bad_request("term")
    term = body["term"].lower().lstrip("@")
    limit = body.get("limit", 100)
    found = []
    for user in state.users.values():
        fields = (user["username"], user["first_name"], user["last_name"], user["nickname"], user["email"])
        if not any(f.lower().startswith(term) for f in fields):
            continue
        if user["delete_at"] and not body.get("allow_inactive"):
            continue
        if body.get("team_id") and not state.is_team_member(body["team_id"], user["id"]):
            continue
        if body.get("in_channel_id") and (body["in_channel_id"], user["id"]) not in state.channel_members:
            continue
        found.append(state.snapshot(user))
    return answer(found[: max(0, int(limit))])


async def set_profile_image(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id = request.match_info["user_id"]
    user = state.user(user_id)
    bot = state.bots.get(user_id)
    if me != user_id and not state.is_admin(me) and not (bot and bot["owner_id"] == me):
        raise forbidden()
    form = await request.post()
    image = form.get("image")
    if not isinstance(image, web.FileField):
        raise FakeError(400, "api.user.upload_profile_user.no_file.app_error", "No file under 'image'.")
    state.profile_images[user_id] = image.file.read()
    user["last_picture_update"] = state.now()
    return answer({"status": "OK"})


# --- teams --------------------------------------------------------------------------------------


async def get_team(request: web.Request) -> web.Response:
    state, me = ctx(request)
    team = state.teams.get(request.match_info["team_id"])
    if team is None:
        raise not_found("team")
    if not (state.is_admin(me) or state.is_team_member(team["id"], me) or team["allow_open_invite"]):
        raise forbidden()
    return answer(state.snapshot(team))


async def get_team_member(request: web.Request) -> web.Response:
    state, me = ctx(request)
    team_id, user_id = request.match_info["team_id"], request.match_info["user_id"]
    if not (state.is_admin(me) or state.is_team_member(team_id, me)):
        raise forbidden()
    member = state.team_members.get((team_id, user_id))
    if member is None:
        raise not_found("team_member")
    return answer(state.snapshot(member))


async def get_user_teams(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id = request.match_info["user_id"]
    if user_id != me and not state.is_admin(me):
        raise forbidden()
    teams = [state.snapshot(t) for t in state.teams.values() if state.is_team_member(t["id"], user_id)]
    return answer(teams)


# --- channels -----------------------------------------------------------------------------------


async def get_all_channels(request: web.Request) -> web.Response:
    """``GetAllChannels`` (``manage_system``): team channels only, oldest first, paged."""
    state, me = ctx(request)
    if not state.is_admin(me):
        raise forbidden()
    include_deleted = request.query.get("include_deleted", "false") == "true"
    page, per_page = int(request.query.get("page", 0)), min(int(request.query.get("per_page", 60)), 200)
    channels = [
        state.snapshot(c)
        for c in sorted(state.channels.values(), key=lambda c: (c["create_at"], c["id"]))
        if c["type"] in {"O", "P"} and (include_deleted or not c["delete_at"])
    ]
    return answer(channels[page * per_page : (page + 1) * per_page])


async def get_channel(request: web.Request) -> web.Response:
    state, me = ctx(request)
    channel = state.channels.get(request.match_info["channel_id"])
    if channel is None:
        raise not_found("channel")
    if not state.can_read_channel(me, channel["id"]):
        raise forbidden()
    return answer(state.snapshot(channel))


async def get_channel_member(request: web.Request) -> web.Response:
    state, me = ctx(request)
    channel_id, user_id = request.match_info["channel_id"], request.match_info["user_id"]
    if not state.can_read_channel(me, channel_id):
        raise forbidden()
    member = state.channel_members.get((channel_id, user_id))
    if member is None:
        raise FakeError(404, "app.channel.get_member.missing.app_error", "No channel member found.")
    return answer(state.snapshot(member))


async def get_channels_for_user(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id, team_id = request.match_info["user_id"], request.match_info["team_id"]
    if user_id != me and not state.is_admin(me):
        raise forbidden()
    if team_id not in state.teams:
        raise not_found("team")
    channels = [
        state.snapshot(c)
        for c in state.channels.values()
        if (c["team_id"] == team_id or c["type"] in {"D", "G"}) and (c["id"], user_id) in state.channel_members
    ]
    return answer(channels)


async def get_all_channels_for_user(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id = request.match_info["user_id"]
    user_id = me if user_id == "me" else user_id
    # The spec: logged in as the user, or edit_other_users (system admins).
    if user_id != me and not state.is_admin(me):
        raise forbidden()
    if user_id not in state.users:
        raise not_found("user")
    include_deleted = request.query.get("include_deleted", "false") == "true"
    channels = [
        state.snapshot(c)
        for c in state.channels.values()
        if (c["id"], user_id) in state.channel_members and (include_deleted or not c["delete_at"])
    ]
    return answer(channels)


async def create_direct_channel(request: web.Request) -> web.Response:
    state, me = ctx(request)
    ids = await read_json(request)
    if not isinstance(ids, list) or len(ids) != 2 or not all(isinstance(i, str) for i in ids):
        raise bad_request("user_ids")
    if any(i not in state.users for i in ids):
        raise bad_request("user_id")
    if me not in ids and not state.is_admin(me):
        raise forbidden()
    return answer(state.snapshot(state.direct_channel(ids[0], ids[1])), status=201)


async def get_team_members(request: web.Request) -> web.Response:
    state, me = ctx(request)
    team_id = request.match_info["team_id"]
    if team_id not in state.teams:
        raise not_found("team")
    if not (state.is_admin(me) or state.is_team_member(team_id, me)):
        raise forbidden()
    members = [state.snapshot(m) for (tid, _), m in state.team_members.items() if tid == team_id]
    return answer(_page(request, members))


async def get_channel_members(request: web.Request) -> web.Response:
    state, me = ctx(request)
    channel_id = request.match_info["channel_id"]
    if channel_id not in state.channels:
        raise not_found("channel")
    if not state.can_read_channel(me, channel_id):
        raise forbidden()
    members = [state.snapshot(m) for (cid, _), m in state.channel_members.items() if cid == channel_id]
    return answer(_page(request, members))


def _page(request: web.Request, items: list[JSON]) -> list[JSON]:
    page, per_page = int(request.query.get("page", "0")), int(request.query.get("per_page", "60"))
    return items[page * per_page : (page + 1) * per_page]


async def create_channel(request: web.Request) -> web.Response:
    state, me = ctx(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("channel")
    team_id, name, kind = body.get("team_id", ""), body.get("name", ""), body.get("type", "")
    if team_id not in state.teams:
        raise bad_request("team_id")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_-]{1,64}", name):
        raise bad_request("name")
    if kind not in {"O", "P"}:
        raise bad_request("type")
    if not (state.is_admin(me) or state.is_team_member(team_id, me)):
        raise forbidden()
    if any(c["team_id"] == team_id and c["name"] == name for c in state.channels.values()):
        raise FakeError(
            400, "store.sql_channel.save_channel.exists.app_error", "A channel with that name already exists."
        )
    channel = state.add_channel(team_id, name, kind, str(body.get("display_name") or name))
    stored = state.channels[channel.id]
    stored.update(creator_id=me, purpose=str(body.get("purpose", "")), header=str(body.get("header", "")))
    state.add_channel_member(channel.id, me)
    return answer(state.snapshot(stored), status=201)


async def add_channel_member(request: web.Request) -> web.Response:
    state, me = ctx(request)
    channel_id = request.match_info["channel_id"]
    body = await read_json(request)
    user_id = body.get("user_id") if isinstance(body, dict) else None
    if channel_id not in state.channels:
        raise not_found("channel")
    if not isinstance(user_id, str) or user_id not in state.users:
        raise bad_request("user_id")
    if not (state.is_admin(me) or state.can_post(me, channel_id)):
        raise forbidden()
    if (channel_id, user_id) not in state.channel_members:
        state.add_channel_member(channel_id, user_id)
    return answer(state.snapshot(state.channel_members[(channel_id, user_id)]), status=201)
