"""Fake REST handler for deleting a post (soft delete, as the server does) and its event."""

from __future__ import annotations

import json

from aiohttp import web

from tests.fakes.mattermost.context import HUB, answer, ctx
from tests.fakes.mattermost.state import forbidden


async def delete_post(request: web.Request) -> web.Response:
    state, me = ctx(request)
    post = state.posts.get(request.match_info["post_id"])
    # Like an edit, a missing post fails the permission check (delete_post / delete_others_posts).
    if post is None or post["delete_at"] or not (post["user_id"] == me or state.is_admin(me)):
        raise forbidden()
    now = state.now()
    post["delete_at"] = now
    post["update_at"] = now
    await request.app[HUB].publish_to_channel(post["channel_id"], "post_deleted", {"post": json.dumps(post)})
    return answer({"status": "OK"})
