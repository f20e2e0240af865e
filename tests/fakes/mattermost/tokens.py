"""Fake REST handlers for personal access tokens: create one for a user (or bot), revoke by id."""

from __future__ import annotations

from aiohttp import web

from tests.fakes.mattermost.context import answer, ctx, read_json
from tests.fakes.mattermost.state import bad_request, forbidden, new_id, not_found


async def create_user_access_token(request: web.Request) -> web.Response:
    state, me = ctx(request)
    user_id = request.match_info["user_id"]
    # Self-service needs create_user_access_token; for another user also edit_other_users: admins.
    if user_id != me and not state.is_admin(me):
        raise forbidden()
    if user_id not in state.users:
        raise not_found("user")
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("description"), str) or not body["description"]:
        raise bad_request("description")
    token = state.issue_token(user_id)
    token_id = new_id()
    state.token_ids[token_id] = token
    return answer({"id": token_id, "token": token, "user_id": user_id, "description": body["description"]}, 201)


async def revoke_user_access_token(request: web.Request) -> web.Response:
    state, me = ctx(request)
    body = await read_json(request)
    token_id = body.get("token_id") if isinstance(body, dict) else None
    if not isinstance(token_id, str) or token_id not in state.token_ids:
        raise bad_request("token_id")
    owner = state.tokens.get(state.token_ids[token_id], "")
    if owner != me and not state.is_admin(me):
        raise forbidden()
    state.tokens.pop(state.token_ids.pop(token_id), None)
    return answer({"status": "OK"})
