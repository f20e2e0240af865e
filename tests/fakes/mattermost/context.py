"""What every REST handler of the fake shares: app keys, the caller, JSON in and out, post lists."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.mattermost.events import EventHub
from tests.fakes.mattermost.state import JSON, FakeError, FakeState, forbidden, not_found

STATE: web.AppKey[FakeState] = web.AppKey("state", FakeState)
HUB: web.AppKey[EventHub] = web.AppKey("hub", EventHub)
USER_ID: web.RequestKey[str] = web.RequestKey("user_id", str)


def ctx(request: web.Request) -> tuple[FakeState, str]:
    """The state and the authenticated caller's user id."""
    return request.app[STATE], request[USER_ID]


def answer(body: Any, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.json_response(body, status=status)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON whatever its content type, or 400."""
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise FakeError(400, "api.context.invalid_body_param.app_error", "Invalid request body.") from exc


def post_list(state: FakeState, posts: list[JSON]) -> JSON:
    """A PostList, newest first, as the server orders it."""
    posts = sorted(posts, key=lambda p: p["create_at"], reverse=True)
    return {
        "order": [p["id"] for p in posts],
        "posts": {p["id"]: state.snapshot(p) for p in posts},
        "next_post_id": "",
        "prev_post_id": "",
        "has_next": False,
    }


def readable_post(state: FakeState, user_id: str, post_id: str) -> JSON:
    """A live post the user may read: 404 when missing or deleted, 403 without read_channel."""
    post = state.posts.get(post_id)
    if post is None or post["delete_at"]:
        raise not_found("post")
    if not state.can_read_channel(user_id, post["channel_id"]):
        raise forbidden()
    return post
