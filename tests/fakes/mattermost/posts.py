"""Fake REST handlers for posts, threads, search, reactions and files."""

from __future__ import annotations

import json
import re

from aiohttp import web

from tests.fakes.mattermost.context import HUB, answer, ctx, post_list, read_json, readable_post
from tests.fakes.mattermost.state import JSON, FakeState, bad_request, forbidden, not_found

_EMOJI = re.compile(r"^[a-z0-9_+\-]{1,64}$")


# --- posts --------------------------------------------------------------------------------------


async def create_post(request: web.Request) -> web.Response:
    state, me = ctx(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("channel_id"), str):
        raise bad_request("channel_id")
    if not isinstance(body.get("message", ""), str) or not isinstance(body.get("props", {}), dict):
        raise bad_request("post")
    if not state.can_post(me, body["channel_id"]):
        raise forbidden()
    post = state.create_post(
        me,
        body["channel_id"],
        body.get("message", ""),
        root_id=body.get("root_id", ""),
        props=body.get("props"),
        type=body.get("type", ""),
        file_ids=body.get("file_ids"),
    )
    await request.app[HUB].post_created(post)
    return answer(state.snapshot(post), status=201)


async def get_post(request: web.Request) -> web.Response:
    state, me = ctx(request)
    return answer(state.snapshot(readable_post(state, me, request.match_info["post_id"])))


def _editable_post(state: FakeState, me: str, post_id: str) -> JSON:
    post = state.posts.get(post_id)
    # Like the server, a missing post fails the edit permission check rather than answering 404.
    if post is None or post["delete_at"] or not (post["user_id"] == me or state.is_admin(me)):
        raise forbidden()
    return post


async def _apply_edit(request: web.Request, post: JSON, changes: JSON) -> web.Response:
    state, _ = ctx(request)
    if not isinstance(changes.get("props", {}), dict) or not isinstance(changes.get("message", ""), str):
        raise bad_request("post")
    now = state.now()
    if "message" in changes and changes["message"] != post["message"]:
        post["message"] = changes["message"]
        post["edit_at"] = now
    for key in ("props", "file_ids", "is_pinned"):
        if key in changes:
            post[key] = changes[key]
    post["update_at"] = now
    await request.app[HUB].post_edited(post)
    return answer(state.snapshot(post))


async def patch_post(request: web.Request) -> web.Response:
    state, me = ctx(request)
    post = _editable_post(state, me, request.match_info["post_id"])
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("post")
    return await _apply_edit(request, post, body)


async def update_post(request: web.Request) -> web.Response:
    state, me = ctx(request)
    post_id = request.match_info["post_id"]
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("id") != post_id:
        raise bad_request("id")
    post = _editable_post(state, me, post_id)
    changes = {"message": body.get("message", ""), "props": body.get("props", {})}
    if "file_ids" in body:
        changes["file_ids"] = body["file_ids"]
    return await _apply_edit(request, post, changes)


async def get_post_thread(request: web.Request) -> web.Response:
    state, me = ctx(request)
    post = readable_post(state, me, request.match_info["post_id"])
    root_id = post["root_id"] or post["id"]
    thread = [p for p in state.posts.values() if (p["id"] == root_id or p["root_id"] == root_id)]
    return answer(post_list(state, [p for p in thread if not p["delete_at"]]))


async def get_channel_posts(request: web.Request) -> web.Response:
    state, me = ctx(request)
    channel_id = request.match_info["channel_id"]
    if not state.can_read_channel(me, channel_id):
        raise forbidden()
    posts = [p for p in state.posts.values() if p["channel_id"] == channel_id]
    if "since" in request.query:
        # ``since`` ignores paging and includes edits and deletions after that instant.
        since = int(request.query["since"])
        return answer(post_list(state, [p for p in posts if p["update_at"] > since]))
    page, per_page = int(request.query.get("page", 0)), min(int(request.query.get("per_page", 60)), 200)
    newest_first = sorted((p for p in posts if not p["delete_at"]), key=lambda p: p["create_at"], reverse=True)
    if before := request.query.get("before", ""):
        # Keyset paging: posts created before that post (the server's ``CreateAt <`` comparison).
        if before not in state.posts:
            raise not_found("post")
        newest_first = [p for p in newest_first if p["create_at"] < state.posts[before]["create_at"]]
    body = post_list(state, newest_first[page * per_page : (page + 1) * per_page])
    body["has_next"] = len(newest_first) > (page + 1) * per_page
    return answer(body)


async def search_posts(request: web.Request) -> web.Response:
    state, me = ctx(request)
    team_id = request.match_info["team_id"]
    if not (state.is_admin(me) or state.is_team_member(team_id, me)):
        raise forbidden()
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("terms"), str):
        raise bad_request("terms")
    terms = [t.lower() for t in body["terms"].split()]
    filters = {t.split(":", 1)[0]: t.split(":", 1)[1] for t in terms if t.startswith(("from:", "in:"))}
    words = [t for t in terms if not t.startswith(("from:", "in:"))]
    match = any if body.get("is_or_search") else all
    found = []
    for post in state.posts.values():
        channel = state.channels[post["channel_id"]]
        if post["delete_at"] or (channel["id"], me) not in state.channel_members:
            continue
        if channel["team_id"] not in {team_id, ""}:
            continue
        if "in" in filters and channel["name"].lower() != filters["in"]:
            continue
        if "from" in filters and state.users[post["user_id"]]["username"].lower() != filters["from"].lstrip("@"):
            continue
        tokens = re.findall(r"\w+", post["message"].lower())
        if words and not match(_word_matches(w, tokens) for w in words):
            continue
        found.append(post)
    page, per_page = int(body.get("page", 0)), int(body.get("per_page", 60))
    page_posts = sorted(found, key=lambda p: p["create_at"], reverse=True)[page * per_page : (page + 1) * per_page]
    result = post_list(state, page_posts)
    return answer({"order": result["order"], "posts": result["posts"]})


def _word_matches(word: str, tokens: list[str]) -> bool:
    if word.endswith("*"):
        return any(t.startswith(word[:-1]) for t in tokens)
    return word in tokens


async def add_reaction(request: web.Request) -> web.Response:
    state, me = ctx(request)
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("user_id") != me:
        raise forbidden()
    post = readable_post(state, me, str(body.get("post_id", "")))
    emoji = body.get("emoji_name")
    if not isinstance(emoji, str) or not _EMOJI.match(emoji):
        raise bad_request("emoji_name")
    reaction = {"user_id": me, "post_id": post["id"], "emoji_name": emoji, "create_at": state.now()}
    state.reactions.append(reaction)
    await request.app[HUB].publish_to_channel(post["channel_id"], "reaction_added", {"reaction": json.dumps(reaction)})
    return answer(dict(reaction), status=201)


# --- files, bots --------------------------------------------------------------------------------


def _readable_file(state: FakeState, me: str, file_id: str) -> tuple[JSON, bytes]:
    entry = state.files.get(file_id)
    if entry is None:
        raise not_found("file_info")
    info = entry[0]
    post = state.posts.get(info["post_id"])
    allowed = state.is_admin(me) or info["user_id"] == me
    if post is not None:
        allowed = allowed or state.can_read_channel(me, post["channel_id"])
    if not allowed:
        raise forbidden()
    return entry


async def get_file_info(request: web.Request) -> web.Response:
    state, me = ctx(request)
    return answer(state.snapshot(_readable_file(state, me, request.match_info["file_id"])[0]))


async def get_file(request: web.Request) -> web.Response:
    state, me = ctx(request)
    info, content = _readable_file(state, me, request.match_info["file_id"])
    headers = {"Content-Disposition": f'attachment; filename="{info["name"]}"'}
    return web.Response(body=content, content_type=info["mime_type"] or "application/octet-stream", headers=headers)


async def upload_file(request: web.Request) -> web.Response:
    """``POST /files`` (multipart ``channel_id`` then ``files``): the server's streaming reader
    wants the channel before the files, and so does this fake."""
    state, me = ctx(request)
    form = await request.post()
    channel_id = str(form.get("channel_id") or request.query.get("channel_id", ""))
    uploads = [f for f in form.getall("files", []) if isinstance(f, web.FileField)]
    if channel_id not in state.channels or not uploads:
        raise bad_request("channel_id" if channel_id not in state.channels else "files")
    if not state.can_post(me, channel_id):
        raise forbidden()
    infos = [
        state.add_file(me, f.filename, f.file.read(), f.content_type or "application/octet-stream") for f in uploads
    ]
    client_ids = [str(c) for c in form.getall("client_ids", [])]
    return answer({"file_infos": [state.snapshot(i) for i in infos], "client_ids": client_ids}, status=201)
