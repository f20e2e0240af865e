"""Async client for the Mattermost REST API v4 (the calls this project makes, nothing more).

Paths, methods and bodies follow Mattermost's OpenAPI spec (vendored in ``tests/contract/specs/``).
Reads are retried on 429/5xx/connection errors; writes are sent once, because a retried
``POST /posts`` after a lost response would post twice.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from services.common.errors import NotFound, UpstreamUnavailable
from services.common.mattermost.models import (
    Bot,
    Channel,
    ChannelMember,
    FileInfo,
    Post,
    Reaction,
    Team,
    TeamMember,
    User,
    UserAccessToken,
    posts_from_post_list,
)
from services.common.mattermost.transport import Transport

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


def _seg(value: str) -> str:
    # Ids may come from users, models or stored rows: quoting keeps "/" or "?" from reaching another
    # route. It leaves "." and "..", which the URL resolves (/files/../info is /info), and "" makes
    # "//" (/channels//members is another route): no id is any of them.
    if value in ("", ".", ".."):
        raise NotFound(f"no Mattermost object has the id {value!r}")
    return quote(value, safe="")


def _strings(data: Any) -> dict[str, str]:
    # The "old" formats are flat maps of strings; anything else is ignored rather than trusted.
    return {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


class MattermostClient:
    """One Mattermost server seen with one token (a user's session, a PAT or a bot token)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
        retry_attempts: int = 4,
        retry_initial_wait: float = 0.5,
        retry_max_wait: float = 10.0,
    ) -> None:
        self._http = Transport(
            base_url,
            token,
            session=session,
            timeout=timeout,
            retry_attempts=retry_attempts,
            retry_initial_wait=retry_initial_wait,
            retry_max_wait=retry_max_wait,
        )

    def __repr__(self) -> str:
        return f"MattermostClient(base_url={self._http.base_url!r})"

    @property
    def base_url(self) -> str:
        """The server's base URL without a trailing slash."""
        return self._http.base_url

    async def __aenter__(self) -> MattermostClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session if the client created it (a passed-in session stays open)."""
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self._http.request_json("GET", path, params=params, idempotent=True)

    # --- system -------------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when the server answers ``/system/ping`` with status OK; raises when unreachable."""
        data = await self._get("/system/ping")
        return isinstance(data, dict) and str(data.get("status", "")).upper() == "OK"

    async def get_client_license(self) -> dict[str, str]:
        """The license subset clients see (``IsLicensed``, ``SkuShortName``, ...; string values)."""
        return _strings(await self._get("/license/client", {"format": "old"}))

    async def get_client_config(self) -> dict[str, str]:
        """The configuration subset clients see (``BuildEnterpriseReady``, ...; string values)."""
        return _strings(await self._get("/config/client", {"format": "old"}))

    # --- users --------------------------------------------------------------------------------

    async def get_me(self) -> User:
        """The token's own user; raises Unauthenticated for an invalid or expired token."""
        return User.from_json(await self._get("/users/me"))

    async def get_user(self, user_id: str) -> User:
        """A user by id (NotFound if none)."""
        return User.from_json(await self._get(f"/users/{_seg(user_id)}"))

    async def get_users(self, page: int = 0, per_page: int = 200) -> list[User]:
        """A page of every user, bots and deactivated users included (``GET /users``)."""
        return [
            User.from_json(u) for u in await self._get("/users", {"page": str(page), "per_page": str(per_page)}) or []
        ]

    async def get_users_by_ids(self, user_ids: list[str]) -> list[User]:
        """The users among ``user_ids`` that exist (unknown ids are silently absent)."""
        if not user_ids:
            return []
        # A read sent as POST because the id list can be long: safe to retry.
        data = await self._http.request_json("POST", "/users/ids", json_body=list(user_ids), idempotent=True)
        return [User.from_json(u) for u in data or []]

    async def get_user_by_username(self, username: str) -> User:
        """A user by username, without a leading ``@`` (NotFound if none)."""
        return User.from_json(await self._get(f"/users/username/{_seg(username.removeprefix('@'))}"))

    async def search_users(
        self, term: str, limit: int = 100, *, team_id: str = "", in_channel_id: str = ""
    ) -> list[User]:
        """Users whose username, names, nickname or email match ``term``."""
        body: dict[str, Any] = {"term": term, "limit": limit}
        if team_id:
            body["team_id"] = team_id
        if in_channel_id:
            body["in_channel_id"] = in_channel_id
        data = await self._http.request_json("POST", "/users/search", json_body=body, idempotent=True)
        return [User.from_json(u) for u in data or []]

    async def set_profile_image(self, user_id: str, image_bytes: bytes, filename: str) -> None:
        """Replace a user's (or bot's) profile image."""
        form = aiohttp.FormData()
        form.add_field("image", image_bytes, filename=filename, content_type="application/octet-stream")
        await self._http.request("POST", f"/users/{_seg(user_id)}/image", data=form)

    # --- teams --------------------------------------------------------------------------------

    async def get_team(self, team_id: str) -> Team:
        """A team by id."""
        return Team.from_json(await self._get(f"/teams/{_seg(team_id)}"))

    async def get_team_member(self, team_id: str, user_id: str) -> TeamMember | None:
        """The user's membership of the team, or None when the user never joined it."""
        try:
            data = await self._get(f"/teams/{_seg(team_id)}/members/{_seg(user_id)}")
        except NotFound:
            return None
        return TeamMember.from_json(data)

    async def get_team_members(self, team_id: str, page: int = 0, per_page: int = 60) -> list[TeamMember]:
        """A page of the team's memberships (PermissionDenied unless the token may view the team)."""
        params = {"page": str(page), "per_page": str(per_page)}
        return [TeamMember.from_json(m) for m in await self._get(f"/teams/{_seg(team_id)}/members", params) or []]

    async def get_user_teams(self, user_id: str) -> list[Team]:
        """The teams a user belongs to."""
        return [Team.from_json(t) for t in await self._get(f"/users/{_seg(user_id)}/teams") or []]

    # --- channels -----------------------------------------------------------------------------

    async def get_channel(self, channel_id: str) -> Channel:
        """A channel by id (PermissionDenied when the token may not read it)."""
        return Channel.from_json(await self._get(f"/channels/{_seg(channel_id)}"))

    async def get_channel_member(self, channel_id: str, user_id: str) -> ChannelMember | None:
        """The user's membership of the channel, or None when the user is not a member."""
        try:
            data = await self._get(f"/channels/{_seg(channel_id)}/members/{_seg(user_id)}")
        except NotFound:
            return None
        return ChannelMember.from_json(data)

    async def get_channel_members(self, channel_id: str, page: int = 0, per_page: int = 60) -> list[ChannelMember]:
        """A page of the channel's memberships (PermissionDenied unless the token may read the channel)."""
        params = {"page": str(page), "per_page": str(per_page)}
        data = await self._get(f"/channels/{_seg(channel_id)}/members", params)
        return [ChannelMember.from_json(m) for m in data or []]

    async def create_channel(
        self, team_id: str, name: str, display_name: str, type: str = "O", purpose: str = "", header: str = ""
    ) -> Channel:
        """Create an open (``O``) or private (``P``) channel; the token's user becomes its member.
        Never retried: a lost answer would leave the name taken."""
        body = {
            "team_id": team_id,
            "name": name,
            "display_name": display_name,
            "type": type,
            "purpose": purpose,
            "header": header,
        }
        return Channel.from_json(await self._http.request_json("POST", "/channels", json_body=body))

    async def add_channel_member(self, channel_id: str, user_id: str) -> ChannelMember:
        """Add a user to a channel (a member already in it is answered as is, so a retry is harmless)."""
        data = await self._http.request_json(
            "POST", f"/channels/{_seg(channel_id)}/members", json_body={"user_id": user_id}, idempotent=True
        )
        return ChannelMember.from_json(data)

    async def get_channels_for_user(self, user_id: str, team_id: str) -> list[Channel]:
        """Every channel of the team the user belongs to (the route has no paging)."""
        data = await self._get(f"/users/{_seg(user_id)}/teams/{_seg(team_id)}/channels")
        return [Channel.from_json(c) for c in data or []]

    async def get_all_channels_for_user(self, user_id: str) -> list[Channel]:
        """Every channel the user is a member of, on all teams, direct and group messages included
        (``GET /users/{user_id}/channels``: the user's own token, or ``edit_other_users``)."""
        data = await self._get(f"/users/{_seg(user_id)}/channels")
        return [Channel.from_json(c) for c in data or []]

    async def get_all_channels(self, page: int = 0, per_page: int = 200) -> list[Channel]:
        """A page of every team channel, archived ones included (``manage_system``; Mattermost
        leaves direct and group messages out)."""
        params = {"page": str(page), "per_page": str(per_page), "include_deleted": "true"}
        return [Channel.from_json(c) for c in await self._get("/channels", params) or []]

    async def get_or_create_direct_channel(self, user_a: str, user_b: str) -> Channel:
        """The DM channel between two users, created if it does not exist yet."""
        # Idempotent on the server (same two users, same channel), so a retry cannot duplicate it.
        data = await self._http.request_json("POST", "/channels/direct", json_body=[user_a, user_b], idempotent=True)
        return Channel.from_json(data)

    async def user_can_read_channel(self, user_id: str, channel_id: str) -> bool:
        """Mattermost's ``read_channel``: admins, members, or team members for open channels."""
        user = await self.get_user(user_id)
        if user.is_system_admin:
            return True
        if await self.get_channel_member(channel_id, user_id) is not None:
            return True
        channel = await self.get_channel(channel_id)
        if channel.type != "O" or not channel.team_id:
            return False
        member = await self.get_team_member(channel.team_id, user_id)
        return member is not None and member.delete_at == 0

    # --- posts --------------------------------------------------------------------------------

    async def get_post(self, post_id: str) -> Post:
        """A post by id."""
        return Post.from_json(await self._get(f"/posts/{_seg(post_id)}"))

    async def get_post_thread(self, post_id: str) -> list[Post]:
        """Every post of the thread containing ``post_id``, oldest first."""
        posts = posts_from_post_list(await self._get(f"/posts/{_seg(post_id)}/thread"))
        return sorted(posts, key=lambda p: (p.create_at, p.id))

    async def get_channel_posts(
        self, channel_id: str, since: int | None = None, page: int = 0, per_page: int = 60
    ) -> list[Post]:
        """A page of the channel's posts, oldest first.

        With ``since`` (epoch milliseconds) the server ignores paging and returns every post
        created, edited or deleted since then.
        """
        params = {"page": str(page), "per_page": str(per_page)}
        if since is not None:
            params = {"since": str(since)}
        posts = posts_from_post_list(await self._get(f"/channels/{_seg(channel_id)}/posts", params))
        return sorted(posts, key=lambda p: (p.create_at, p.id))

    async def get_posts_before(self, channel_id: str, before: str = "", per_page: int = 200) -> list[Post]:
        """Keyset paging backwards: the channel's newest ``per_page`` posts created before post
        ``before`` (the newest of all without it), oldest first."""
        params = {"per_page": str(per_page)}
        if before:
            params["before"] = before
        posts = posts_from_post_list(await self._get(f"/channels/{_seg(channel_id)}/posts", params))
        return sorted(posts, key=lambda p: (p.create_at, p.id))

    async def search_posts(
        self, team_id: str, terms: str, page: int = 0, per_page: int = 60, *, is_or_search: bool = False
    ) -> list[Post]:
        """Posts of the team matching ``terms`` that the token may read, in the server's order."""
        body = {"terms": terms, "is_or_search": is_or_search, "page": page, "per_page": per_page}
        data = await self._http.request_json(
            "POST", f"/teams/{_seg(team_id)}/posts/search", json_body=body, idempotent=True
        )
        return posts_from_post_list(data or {})

    async def create_post(
        self,
        channel_id: str,
        message: str,
        root_id: str = "",
        props: dict[str, Any] | None = None,
        type: str = "",
        file_ids: list[str] | None = None,
    ) -> Post:
        """Create a post (a reply when ``root_id`` is set). Never retried: it could post twice."""
        body: dict[str, Any] = {"channel_id": channel_id, "message": message}
        if root_id:
            body["root_id"] = root_id
        if props:
            body["props"] = props
        if type:
            body["type"] = type
        if file_ids:
            body["file_ids"] = list(file_ids)
        return Post.from_json(await self._http.request_json("POST", "/posts", json_body=body))

    async def patch_post(self, post_id: str, message: str | None = None, props: dict[str, Any] | None = None) -> Post:
        """Change only the given fields; ``props`` replaces the post's whole props map."""
        body: dict[str, Any] = {}
        if message is not None:
            body["message"] = message
        if props is not None:
            body["props"] = props
        return Post.from_json(await self._http.request_json("PUT", f"/posts/{_seg(post_id)}/patch", json_body=body))

    async def update_post(self, post: Post) -> Post:
        """Replace a post's message, props and files with those of ``post`` (matched by id)."""
        body = {"id": post.id, "message": post.message, "props": post.props, "file_ids": list(post.file_ids)}
        return Post.from_json(await self._http.request_json("PUT", f"/posts/{_seg(post.id)}", json_body=body))

    async def delete_post(self, post_id: str) -> None:
        """Soft-delete a post (its author or an admin)."""
        await self._http.request_json("DELETE", f"/posts/{_seg(post_id)}")

    async def add_reaction(self, user_id: str, post_id: str, emoji_name: str) -> Reaction:
        """React to a post as ``user_id`` (which must be the token's own user)."""
        body = {"user_id": user_id, "post_id": post_id, "emoji_name": emoji_name.strip(":")}
        return Reaction.from_json(await self._http.request_json("POST", "/reactions", json_body=body))

    # --- files --------------------------------------------------------------------------------

    async def get_file_info(self, file_id: str) -> FileInfo:
        """A file's metadata."""
        return FileInfo.from_json(await self._get(f"/files/{_seg(file_id)}/info"))

    async def get_file(self, file_id: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
        """A file's bytes; InvalidInput when larger than ``max_bytes`` (checked while reading)."""
        return await self._http.request("GET", f"/files/{_seg(file_id)}", idempotent=True, max_bytes=max_bytes)

    async def get_file_start(self, file_id: str, max_bytes: int) -> bytes:
        """A file's first ``max_bytes`` bytes (all of it when smaller); the rest is never read."""
        return await self._http.request(
            "GET", f"/files/{_seg(file_id)}", idempotent=True, max_bytes=max_bytes, truncate=True
        )

    async def upload_file(
        self, channel_id: str, filename: str, content: bytes, mime_type: str = "application/octet-stream"
    ) -> FileInfo:
        """Upload a file into a channel as the token's user; attach it with ``create_post(...,
        file_ids=[info.id])`` by the same user. Never retried: it could upload twice."""
        form = aiohttp.FormData()
        # The server reads the multipart stream in order and needs the channel before the file.
        form.add_field("channel_id", channel_id)
        form.add_field("files", content, filename=filename, content_type=mime_type)
        data = await self._http.request_json("POST", "/files", data=form)
        infos = data.get("file_infos") if isinstance(data, dict) else None
        if not infos:
            raise UpstreamUnavailable("Mattermost POST /files answered without file_infos")
        return FileInfo.from_json(infos[0])

    # --- bots ---------------------------------------------------------------------------------

    async def create_bot(self, username: str, display_name: str = "", description: str = "") -> Bot:
        """Create a bot owned by the token's user (needs ``create_bot``; InvalidInput if taken)."""
        body = {"username": username, "display_name": display_name, "description": description}
        return Bot.from_json(await self._http.request_json("POST", "/bots", json_body=body))

    async def get_bot(self, bot_user_id: str, *, include_deleted: bool = True) -> Bot:
        """A bot by its user id; disabled bots are included unless asked otherwise."""
        params = {"include_deleted": "true" if include_deleted else "false"}
        return Bot.from_json(await self._get(f"/bots/{_seg(bot_user_id)}", params))

    async def patch_bot(
        self,
        bot_user_id: str,
        *,
        username: str | None = None,
        display_name: str | None = None,
        description: str | None = None,
    ) -> Bot:
        """Change the given fields of a bot (the spec lists ``username`` as required; servers don't)."""
        body = {
            key: value
            for key, value in (
                ("username", username),
                ("display_name", display_name),
                ("description", description),
            )
            if value is not None
        }
        return Bot.from_json(await self._http.request_json("PUT", f"/bots/{_seg(bot_user_id)}", json_body=body))

    async def disable_bot(self, bot_user_id: str) -> Bot:
        """Disable a bot (its user is deactivated, its tokens stop working)."""
        return Bot.from_json(await self._http.request_json("POST", f"/bots/{_seg(bot_user_id)}/disable"))

    async def enable_bot(self, bot_user_id: str) -> Bot:
        """Re-enable a disabled bot."""
        return Bot.from_json(await self._http.request_json("POST", f"/bots/{_seg(bot_user_id)}/enable"))

    # --- access tokens ------------------------------------------------------------------------

    async def create_user_access_token(self, user_id: str, description: str) -> UserAccessToken:
        """A new personal access token for ``user_id`` (needs ``create_user_access_token``, and
        ``edit_other_users`` for someone else, e.g. a bot). The secret is in ``token`` only."""
        data = await self._http.request_json(
            "POST", f"/users/{_seg(user_id)}/tokens", json_body={"description": description}
        )
        return UserAccessToken.from_json(data)

    async def revoke_user_access_token(self, token_id: str) -> None:
        """Revoke a personal access token by its id (sessions using it end)."""
        await self._http.request_json("POST", "/users/tokens/revoke", json_body={"token_id": token_id})
