"""The built-in Mattermost tools, run for the requesting user.

The service reaches Mattermost with the cluster's own account, which can see far more than the
user. Every read therefore checks the requesting user's ``read_channel`` permission first, search
hits are filtered to channels the user can read, and a post from any other channel never reaches
the model. "Not found" and "not readable" give the same answer, so the model learns nothing about
channels the user cannot see. The mcp service's Mattermost MCP server runs the same handlers with
a client holding the user's own token, so Mattermost enforces the user's permissions a second time.

``create_post`` posts with the cluster's account (the service holds no per-bot token), into
channels where the requesting user may post, and marks the post with props naming the agent's bot
and the requesting user (``ai_generated_by`` is the plugin's tracking prop).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.errors import NotFound, PermissionDenied
from services.common.mattermost import Channel, MattermostClient, Post, User
from services.tools.results import ToolFailed, ToolResult

logger = logging.getLogger(__name__)

_UNREADABLE = "not found, or the user cannot read it"


@dataclass(frozen=True)
class SemanticHit:
    """One semantic search result from the index service."""

    post_id: str
    channel_id: str
    score: float


class SemanticSearch(Protocol):
    """The index service's search; returns None when semantic search is unavailable."""

    async def search(
        self, query: str, *, user_id: str, team_id: str, channel_id: str, limit: int
    ) -> list[SemanticHit] | None:
        """Hits among the channels ``user_id`` can read now, best first; None to fall back to
        keyword search."""
        ...


class ReadableChannels:
    """Memoised ``read_channel`` checks for one user during one tool call."""

    def __init__(self, mattermost: MattermostClient, user_id: str) -> None:
        self._mm = mattermost
        self._user_id = user_id
        self._known: dict[str, bool] = {}

    async def can_read(self, channel_id: str) -> bool:
        """Whether the user may read the channel (False for channels that do not exist)."""
        if channel_id not in self._known:
            try:
                self._known[channel_id] = await self._mm.user_can_read_channel(self._user_id, channel_id)
            except (NotFound, PermissionDenied):
                self._known[channel_id] = False
        return self._known[channel_id]

    async def keep_readable(self, posts: Iterable[Post]) -> list[Post]:
        """The posts whose channel the user may read, in their order."""
        return [p for p in posts if await self.can_read(p.channel_id)]


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class MattermostTools:
    """Handlers of the Mattermost tools; each takes validated arguments and the requesting user."""

    def __init__(self, mattermost: MattermostClient, semantic: SemanticSearch | None = None) -> None:
        self._mm = mattermost
        self._semantic = semantic

    def handlers(self) -> dict[str, Callable[..., Awaitable[ToolResult]]]:
        """Tool name → handler(user_id, args, context_team_id, semantic_enabled, agent_bot_user_id)."""
        return {
            "read_post": self.read_post,
            "read_channel": self.read_channel,
            "search_posts": self.search_posts,
            "search_users": self.search_users,
            "get_channel_info": self.get_channel_info,
            "get_team_info": self.get_team_info,
            "create_post": self.create_post,
            "create_channel": self.create_channel,
            "get_channel_members": self.get_channel_members,
            "get_team_members": self.get_team_members,
        }

    async def _render(self, posts: list[Post]) -> str:
        names = await self._usernames(p.user_id for p in posts)
        lines = []
        for post in posts:
            reply = f" (reply to {post.root_id})" if post.root_id else ""
            lines.append(
                f"[post {post.id} in channel {post.channel_id}{reply}] @{names.get(post.user_id, post.user_id)}"
                f" at {_when(post.create_at)}: {post.message}"
            )
        return "\n".join(lines)

    async def _usernames(self, user_ids: Iterable[str]) -> dict[str, str]:
        ids = sorted(set(user_ids))
        if not ids:
            return {}
        return {u.id: u.username for u in await self._mm.get_users_by_ids(ids)}

    async def read_post(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """The post and, unless ``include_thread`` is false, every post of its thread."""
        readable = ReadableChannels(self._mm, user_id)
        try:
            post = await self._mm.get_post(args["post_id"])
        except (NotFound, PermissionDenied):
            raise ToolFailed(f"post {args['post_id']}: {_UNREADABLE}") from None
        if post.delete_at or not await readable.can_read(post.channel_id):
            raise ToolFailed(f"post {args['post_id']}: {_UNREADABLE}")
        posts = [post]
        if args.get("include_thread", True):
            # Thread posts share the root's channel, but check anyway: the rule is per post.
            posts = await readable.keep_readable(await self._mm.get_post_thread(post.id))
        return ToolResult(await self._render(posts))

    async def read_channel(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """The channel's most recent ``limit`` posts (default 20), oldest first."""
        if not await ReadableChannels(self._mm, user_id).can_read(args["channel_id"]):
            raise ToolFailed(f"channel {args['channel_id']}: {_UNREADABLE}")
        posts = await self._mm.get_channel_posts(args["channel_id"], per_page=args.get("limit", 20))
        if not posts:
            return ToolResult("The channel has no posts.")
        return ToolResult(await self._render(posts))

    async def search_posts(
        self, user_id: str, args: dict[str, Any], *, team_id: str = "", semantic_enabled: bool = False, **_: Any
    ) -> ToolResult:
        """Semantic search through the index service when enabled and available, else keywords."""
        readable = ReadableChannels(self._mm, user_id)
        limit = args.get("limit", 10)
        team = args.get("team_id") or team_id
        channel_id = args.get("channel_id", "")
        if channel_id and not await readable.can_read(channel_id):
            raise ToolFailed(f"channel {channel_id}: {_UNREADABLE}")
        posts: list[Post] | None = None
        if semantic_enabled and self._semantic is not None:
            # Only an asked team narrows the search, as on /search: the conversation's team would
            # drop the user's DMs and GMs, which have none.
            team_filter = args.get("team_id", "")
            posts = await self._semantic_posts(user_id, args["query"], team_filter, channel_id, limit, readable)
        if posts is None:
            posts = await self._keyword_posts(user_id, args["query"], team, channel_id, limit)
        posts = (await readable.keep_readable(posts))[:limit]
        if not posts:
            return ToolResult("No posts matched.")
        return ToolResult(await self._render(posts))

    async def _semantic_posts(
        self, user_id: str, query: str, team_id: str, channel_id: str, limit: int, readable: ReadableChannels
    ) -> list[Post] | None:
        assert self._semantic is not None
        # The index looks the user's channels up itself (DMs and GMs included, archived ones not).
        hits = await self._semantic.search(query, user_id=user_id, team_id=team_id, channel_id=channel_id, limit=limit)
        if hits is None:
            return None
        posts = []
        for hit in hits:
            # The index filters by channel too; this check is what guarantees it.
            if not await readable.can_read(hit.channel_id):
                continue
            try:
                post = await self._mm.get_post(hit.post_id)
            except (NotFound, PermissionDenied):
                continue
            if not post.delete_at:
                posts.append(post)
        return posts

    async def _keyword_posts(self, user_id: str, query: str, team_id: str, channel_id: str, limit: int) -> list[Post]:
        teams = [team_id] if team_id else [t.id for t in await self._mm.get_user_teams(user_id)]
        found: list[Post] = []
        for team in teams:
            # Fetch more than asked: hits the user cannot read are dropped afterwards.
            for post in await self._mm.search_posts(team, query, per_page=min(limit * 3, 200)):
                if not channel_id or post.channel_id == channel_id:
                    found.append(post)
        return found

    async def search_users(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """Active users matching ``term`` (no e-mail addresses: privacy settings may hide them)."""
        users = [u for u in await self._mm.search_users(args["term"], limit=args.get("limit", 20)) if u.is_active]
        if not users:
            return ToolResult("No users matched.")
        return ToolResult("\n".join(_describe_user(u) for u in users))

    async def get_channel_info(self, user_id: str, args: dict[str, Any], *, team_id: str = "", **_: Any) -> ToolResult:
        """A channel by id (if readable) or by partial name among the user's channels of a team."""
        if args.get("channel_id"):
            if not await ReadableChannels(self._mm, user_id).can_read(args["channel_id"]):
                raise ToolFailed(f"channel {args['channel_id']}: {_UNREADABLE}")
            return ToolResult(_describe_channel(await self._mm.get_channel(args["channel_id"])))
        name = args.get("channel_name", "").lower().lstrip("~")
        team = args.get("team_id") or team_id
        if not name or not team:
            raise ToolFailed("give channel_id, or channel_name with team_id")
        matches = [
            c
            for c in await self._mm.get_channels_for_user(user_id, team)
            if name in c.name.lower() or name in c.display_name.lower()
        ]
        if not matches:
            raise ToolFailed(f"no channel of yours matches {name!r} in team {team}")
        return ToolResult("\n".join(_describe_channel(c) for c in matches[:20]))

    async def get_team_info(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """A team the user belongs to, by id or name."""
        wanted_id, wanted_name = args.get("team_id", ""), args.get("team_name", "").lower()
        if not wanted_id and not wanted_name:
            raise ToolFailed("give team_id or team_name")
        for team in await self._mm.get_user_teams(user_id):
            if team.id == wanted_id or (wanted_name and wanted_name in (team.name.lower(), team.display_name.lower())):
                return ToolResult(f"team {team.id}: name {team.name}, display name {team.display_name!r}")
        raise ToolFailed(f"team {wanted_id or wanted_name}: {_UNREADABLE}")

    async def create_post(
        self, user_id: str, args: dict[str, Any], *, agent_bot_user_id: str = "", **_: Any
    ) -> ToolResult:
        """Post ``message`` into a channel the requesting user may post in (channel members)."""
        channel_id = args["channel_id"]
        try:
            member = await self._mm.get_channel_member(channel_id, user_id)
        except (NotFound, PermissionDenied):
            member = None
        if member is None:
            raise ToolFailed(f"channel {channel_id}: not found, or the user cannot post there")
        root_id = args.get("root_id", "")
        if root_id:
            try:
                root = await self._mm.get_post(root_id)
            except (NotFound, PermissionDenied):
                raise ToolFailed(f"post {root_id}: {_UNREADABLE}") from None
            if root.channel_id != channel_id:
                raise ToolFailed(f"post {root_id} is not in channel {channel_id}")
        props = {"ai_generated_by": user_id}
        if agent_bot_user_id:
            # For an agent; through the MCP server an external client posts as the user, with no bot.
            props |= {"from_bot": "true", "ai_agent_bot_user_id": agent_bot_user_id}
        post = await self._mm.create_post(channel_id, args["message"], root_id=root_id, props=props)
        return ToolResult(f"Created post {post.id} in channel {channel_id}.")

    async def _is_team_member(self, team_id: str, user_id: str) -> bool:
        try:
            member = await self._mm.get_team_member(team_id, user_id)
        except (NotFound, PermissionDenied):
            return False
        return member is not None and member.delete_at == 0

    async def create_channel(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """A new channel in a team the user belongs to, with the user as a member."""
        team_id = args["team_id"]
        if not await self._is_team_member(team_id, user_id):
            raise ToolFailed(f"team {team_id}: {_UNREADABLE}")
        kind = args.get("type", "O")
        channel = await self._mm.create_channel(
            team_id, args["name"], args["display_name"], kind, args.get("purpose", ""), args.get("header", "")
        )
        # Created with the cluster's account, the channel has the user added; created with the
        # user's own token (the MCP server), the user already is its first member.
        if channel.creator_id != user_id:
            await self._mm.add_channel_member(channel.id, user_id)
        return ToolResult(f"Created {_describe_channel(channel)}.")

    async def get_channel_members(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """The first ``limit`` members (default 100) of a channel the user can read."""
        channel_id = args["channel_id"]
        if not await ReadableChannels(self._mm, user_id).can_read(channel_id):
            raise ToolFailed(f"channel {channel_id}: {_UNREADABLE}")
        members = await self._mm.get_channel_members(channel_id, per_page=args.get("limit", 100))
        return await self._describe_members([m.user_id for m in members])

    async def get_team_members(self, user_id: str, args: dict[str, Any], **_: Any) -> ToolResult:
        """The first ``limit`` members (default 100) of a team the user belongs to."""
        team_id = args["team_id"]
        if not await self._is_team_member(team_id, user_id):
            raise ToolFailed(f"team {team_id}: {_UNREADABLE}")
        members = await self._mm.get_team_members(team_id, per_page=args.get("limit", 100))
        return await self._describe_members([m.user_id for m in members if m.delete_at == 0])

    async def _describe_members(self, user_ids: list[str]) -> ToolResult:
        users = await self._mm.get_users_by_ids(user_ids)
        if not users:
            return ToolResult("No members.")
        return ToolResult("\n".join(_describe_user(u) for u in users))


def _describe_user(user: User) -> str:
    name = " ".join(p for p in (user.first_name, user.last_name) if p)
    extras = ", ".join(
        f"{label} {value}"
        for label, value in (("name", name), ("nickname", user.nickname), ("position", user.position))
        if value
    )
    kind = "bot" if user.is_bot else "user"
    return f"{kind} {user.id}: @{user.username}" + (f" ({extras})" if extras else "")


def _describe_channel(channel: Channel) -> str:
    kinds = {"O": "public channel", "P": "private channel", "D": "direct message", "G": "group message"}
    text = (
        f"{kinds.get(channel.type, 'channel')} {channel.id}: name {channel.name}, display name {channel.display_name!r}"
    )
    if channel.team_id:
        text += f", team {channel.team_id}"
    if channel.purpose:
        text += f", purpose {channel.purpose!r}"
    if channel.header:
        text += f", header {channel.header!r}"
    return text
