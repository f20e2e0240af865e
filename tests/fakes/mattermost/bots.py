"""Fake REST handlers for bot accounts: create, read, patch, disable, enable."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.mattermost.context import answer, ctx, read_json
from tests.fakes.mattermost.state import JSON, FakeError, FakeState, bad_request, forbidden, not_found


def _bot_username_taken(state: FakeState, username: str, except_id: str = "") -> bool:
    return any(u["username"] == username and u["id"] != except_id for u in state.users.values())


async def create_bot(request: web.Request) -> web.Response:
    state, me = ctx(request)
    if not state.is_admin(me):
        raise forbidden()
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("username"), str) or not body["username"]:
        raise bad_request("username")
    if _bot_username_taken(state, body["username"]):
        raise FakeError(400, "app.user.save.username_exists.app_error", "An account with that username exists.")
    user = state.add_user(body["username"], is_bot=True)
    state.users[user.id]["first_name"] = body.get("display_name", "")
    now = state.now()
    state.bots[user.id] = {
        "user_id": user.id,
        "create_at": now,
        "update_at": now,
        "delete_at": 0,
        "username": body["username"],
        "display_name": body.get("display_name", ""),
        "description": body.get("description", ""),
        "owner_id": me,
    }
    return answer(state.snapshot(state.bots[user.id]), status=201)


def _managed_bot(request: web.Request) -> JSON:
    state, me = ctx(request)
    bot = state.bots.get(request.match_info["bot_user_id"])
    if bot is None:
        raise not_found("bot")
    if bot["owner_id"] != me and not state.is_admin(me):
        raise forbidden()
    return bot


async def get_bot(request: web.Request) -> web.Response:
    bot = _managed_bot(request)
    if bot["delete_at"] and request.query.get("include_deleted") != "true":
        raise not_found("bot")
    return answer(dict(bot))


async def patch_bot(request: web.Request) -> web.Response:
    state, _ = ctx(request)
    bot = _managed_bot(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("bot")
    username = body.get("username", bot["username"])
    if _bot_username_taken(state, username, except_id=bot["user_id"]):
        raise FakeError(400, "app.user.save.username_exists.app_error", "An account with that username exists.")
    bot.update({k: body[k] for k in ("display_name", "description") if k in body}, username=username)
    bot["update_at"] = state.now()
    state.users[bot["user_id"]].update(username=username, first_name=bot["display_name"])
    return answer(dict(bot))


async def _set_bot_active(request: web.Request, active: bool) -> web.Response:
    state, _ = ctx(request)
    bot = _managed_bot(request)
    now = state.now()
    bot["delete_at"] = 0 if active else now
    bot["update_at"] = now
    state.users[bot["user_id"]]["delete_at"] = bot["delete_at"]
    return answer(dict(bot))


async def disable_bot(request: web.Request) -> web.Response:
    return await _set_bot_active(request, False)


async def enable_bot(request: web.Request) -> web.Response:
    return await _set_bot_active(request, True)
