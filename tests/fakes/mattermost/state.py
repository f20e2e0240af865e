"""In-memory state of the fake Mattermost: users, teams, channels, posts, files, bots.

Objects are kept as the JSON dicts Mattermost sends on the wire (``#/components/schemas/...``),
so handlers return copies without a translation layer. Permission checks mirror the server's
defaults where they are cheap: ``system_admin`` may do anything, members read and post in their
channels, team members read open channels.
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


def new_id() -> str:
    """A 26-character lowercase base32 id, the shape of every Mattermost id."""
    return base64.b32encode(uuid.uuid4().bytes).decode().lower().rstrip("=")[:26]


class FakeError(Exception):
    """Becomes an AppError answer ``{id, message, detailed_error, request_id, status_code}``."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def forbidden() -> FakeError:
    """The error Mattermost answers when a permission check fails."""
    return FakeError(403, "api.context.permissions.app_error", "You do not have the appropriate permissions.")


def not_found(what: str) -> FakeError:
    """The error Mattermost answers when a store lookup finds nothing."""
    return FakeError(404, f"app.{what}.get.app_error", f"Unable to find the {what}.")


def bad_request(param: str) -> FakeError:
    """The error Mattermost answers for a missing or invalid parameter."""
    return FakeError(400, "api.context.invalid_param.app_error", f"Invalid {param} parameter.")


@dataclass(frozen=True)
class FakeUser:
    """A seeded user and the personal access token it authenticates with."""

    id: str
    username: str
    token: str


class Memberships(dict[tuple[str, str], JSON]):
    """Channel memberships by ``(channel_id, user_id)``, with the members of each channel kept
    beside them: every post and every edit goes to the channel's members, and finding them by a
    scan of every membership made the fake slower with each channel a benchmark added. Tests
    add and delete entries as in any dict."""

    def __init__(self) -> None:
        super().__init__()
        self._by_channel: dict[str, set[str]] = {}

    def __setitem__(self, key: tuple[str, str], value: JSON) -> None:
        super().__setitem__(key, value)
        self._by_channel.setdefault(key[0], set()).add(key[1])

    def __delitem__(self, key: tuple[str, str]) -> None:
        super().__delitem__(key)
        self._by_channel[key[0]].discard(key[1])

    def pop(self, key: tuple[str, str], *default: Any) -> Any:  # type: ignore[override]
        if key in self:
            self._by_channel[key[0]].discard(key[1])
        return super().pop(key, *default)

    def members_of(self, channel_id: str) -> set[str]:
        """The ids of the channel's members (a copy)."""
        return set(self._by_channel.get(channel_id, ()))


@dataclass(frozen=True)
class FakeTeam:
    """A seeded team."""

    id: str
    name: str


@dataclass(frozen=True)
class FakeChannel:
    """A seeded channel."""

    id: str
    name: str
    type: str
    team_id: str


@dataclass
class FakeState:
    """Everything the fake server knows; tests seed it through ``FakeMattermost``."""

    users: dict[str, JSON] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    teams: dict[str, JSON] = field(default_factory=dict)
    team_members: dict[tuple[str, str], JSON] = field(default_factory=dict)
    channels: dict[str, JSON] = field(default_factory=dict)
    channel_members: Memberships = field(default_factory=Memberships)
    posts: dict[str, JSON] = field(default_factory=dict)
    files: dict[str, tuple[JSON, bytes]] = field(default_factory=dict)
    bots: dict[str, JSON] = field(default_factory=dict)
    reactions: list[JSON] = field(default_factory=list)
    profile_images: dict[str, bytes] = field(default_factory=dict)
    # personal access token id → the token (for revocation by id)
    token_ids: dict[str, str] = field(default_factory=dict)
    # GET /license/client and /config/client (format=old): flat maps of strings, unlicensed
    # Team Edition until a test says otherwise (``FakeMattermost.set_license``).
    client_license: dict[str, str] = field(default_factory=lambda: {"IsLicensed": "false"})
    client_config: dict[str, str] = field(
        default_factory=lambda: {"BuildEnterpriseReady": "false", "EnableDeveloper": "false", "EnableTesting": "false"}
    )
    _last_ms: int = 0

    def now(self) -> int:
        """Epoch milliseconds, strictly increasing so that ordering by time is never ambiguous."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    # --- seeding ------------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        roles: str = "system_user",
        is_bot: bool = False,
        *,
        user_id: str = "",
        token: str = "",
    ) -> FakeUser:
        """A user (or bot user) with a personal access token; ``user_id`` and ``token`` default to
        fresh random values (given, they make a seeded world the same on every run)."""
        if any(u["username"] == username for u in self.users.values()):
            raise ValueError(f"username {username!r} is taken")
        user_id = user_id or new_id()
        if user_id in self.users:
            raise ValueError(f"user id {user_id!r} is taken")
        now = self.now()
        self.users[user_id] = {
            "id": user_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "username": username,
            "first_name": "",
            "last_name": "",
            "nickname": "",
            "email": f"{username}@example.com",
            "email_verified": True,
            "auth_service": "",
            "roles": roles,
            "locale": "en",
            "position": "",
            "props": {},
            "last_picture_update": 0,
            "timezone": {"automaticTimezone": "", "manualTimezone": "", "useAutomaticTimezone": "true"},
            "is_bot": is_bot,
        }
        return FakeUser(id=user_id, username=username, token=self.issue_token(user_id, token))

    def issue_token(self, user_id: str, token: str = "") -> str:
        """A new access token for an existing user (what an admin would create for a bot); random
        unless ``token`` is given."""
        token = token or new_id()
        if self.tokens.get(token, user_id) != user_id:
            raise ValueError("that token belongs to another user")
        self.tokens[token] = user_id
        return token

    def add_team(self, name: str, display_name: str = "", type: str = "O", *, team_id: str = "") -> FakeTeam:
        """A team; ``type`` O is open to anyone, I is invite only; ``team_id`` random unless given."""
        team_id = team_id or new_id()
        if team_id in self.teams:
            raise ValueError(f"team id {team_id!r} is taken")
        now = self.now()
        self.teams[team_id] = {
            "id": team_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "display_name": display_name or name,
            "name": name,
            "description": "",
            "email": "",
            "type": type,
            "allowed_domains": "",
            "invite_id": new_id(),
            "allow_open_invite": type == "O",
        }
        return FakeTeam(id=team_id, name=name)

    def add_channel(
        self, team_id: str, name: str, type: str = "O", display_name: str = "", *, channel_id: str = ""
    ) -> FakeChannel:
        """A channel: O open, P private, D direct, G group (D/G have no team); ``channel_id``
        random unless given."""
        if type not in {"O", "P", "D", "G"}:
            raise ValueError(f"bad channel type {type!r}")
        channel_id = channel_id or new_id()
        if channel_id in self.channels:
            raise ValueError(f"channel id {channel_id!r} is taken")
        now = self.now()
        self.channels[channel_id] = {
            "id": channel_id,
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "team_id": "" if type in {"D", "G"} else team_id,
            "type": type,
            "display_name": display_name or name,
            "name": name,
            "header": "",
            "purpose": "",
            "last_post_at": 0,
            "total_msg_count": 0,
            "creator_id": "",
        }
        return FakeChannel(id=channel_id, name=name, type=type, team_id=self.channels[channel_id]["team_id"])

    def add_team_member(self, team_id: str, user_id: str) -> None:
        """Make a user a member of a team."""
        self.team_members[(team_id, user_id)] = {
            "team_id": team_id,
            "user_id": user_id,
            "roles": "team_user",
            "delete_at": 0,
            "scheme_user": True,
            "scheme_admin": False,
            "explicit_roles": "",
        }

    def add_channel_member(self, channel_id: str, user_id: str) -> None:
        """Make a user a member of a channel."""
        self.channel_members[(channel_id, user_id)] = {
            "channel_id": channel_id,
            "user_id": user_id,
            "roles": "channel_user",
            "last_viewed_at": 0,
            "msg_count": 0,
            "mention_count": 0,
            "notify_props": {},
            "last_update_at": self.now(),
        }

    def direct_channel(self, user_a: str, user_b: str) -> JSON:
        """The DM channel of two users, created on first use; its name is the sorted ids."""
        name = "__".join(sorted((user_a, user_b)))
        for channel in self.channels.values():
            if channel["type"] == "D" and channel["name"] == name:
                return channel
        created = self.add_channel("", name, "D")
        self.add_channel_member(created.id, user_a)
        self.add_channel_member(created.id, user_b)
        return self.channels[created.id]

    def add_file(self, user_id: str, name: str, content: bytes, mime_type: str) -> JSON:
        """An uploaded file not yet attached to a post."""
        now = self.now()
        file_id = new_id()
        info = {
            "id": file_id,
            "user_id": user_id,
            "post_id": "",
            "create_at": now,
            "update_at": now,
            "delete_at": 0,
            "name": name,
            "extension": name.rsplit(".", 1)[-1] if "." in name else "",
            "size": len(content),
            "mime_type": mime_type,
            "has_preview_image": False,
        }
        self.files[file_id] = (info, content)
        return info

    def create_post(
        self,
        user_id: str,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        props: JSON | None = None,
        type: str = "",
        file_ids: list[str] | None = None,
        create_at: int | None = None,
    ) -> JSON:
        """Store a post after the checks Mattermost makes on its shape (not on permissions)."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise bad_request("channel_id")
        if root_id:
            root = self.posts.get(root_id)
            if root is None or root["channel_id"] != channel_id or root["root_id"]:
                raise FakeError(400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter.")
        if type and not type.startswith("custom_"):
            raise bad_request("type")
        for file_id in file_ids or []:
            entry = self.files.get(file_id)
            if entry is None or entry[0]["user_id"] != user_id or entry[0]["post_id"]:
                raise bad_request("file_ids")
        now = create_at if create_at is not None else self.now()
        post_id = new_id()
        post = {
            "id": post_id,
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": user_id,
            "channel_id": channel_id,
            "root_id": root_id,
            "original_id": "",
            "message": message,
            "type": type,
            "props": dict(props or {}),
            "hashtag": "",
            "file_ids": list(file_ids or []),
            "pending_post_id": "",
            "metadata": {},
        }
        for file_id in file_ids or []:
            self.files[file_id][0]["post_id"] = post_id
        self.posts[post_id] = post
        channel["last_post_at"] = max(channel["last_post_at"], now)
        channel["total_msg_count"] += 1
        return post

    # --- permissions --------------------------------------------------------------------------

    def user(self, user_id: str) -> JSON:
        """A user by id, or 404."""
        user = self.users.get(user_id)
        if user is None:
            raise not_found("user")
        return user

    def is_admin(self, user_id: str) -> bool:
        """Whether the user holds ``system_admin``."""
        return "system_admin" in self.users.get(user_id, {}).get("roles", "").split()

    def is_team_member(self, team_id: str, user_id: str) -> bool:
        """An active member of the team."""
        member = self.team_members.get((team_id, user_id))
        return member is not None and member["delete_at"] == 0

    def can_read_channel(self, user_id: str, channel_id: str) -> bool:
        """Mattermost's ``read_channel``: admins, members, and team members for open channels."""
        channel = self.channels.get(channel_id)
        if channel is None:
            return False
        if self.is_admin(user_id) or (channel_id, user_id) in self.channel_members:
            return True
        return channel["type"] == "O" and self.is_team_member(channel["team_id"], user_id)

    def can_post(self, user_id: str, channel_id: str) -> bool:
        """Mattermost's ``create_post``: members of the channel, and admins anywhere."""
        return channel_id in self.channels and (self.is_admin(user_id) or (channel_id, user_id) in self.channel_members)

    def channel_member_ids(self, channel_id: str) -> set[str]:
        """The ids of the channel's members (who receive its WebSocket events)."""
        return self.channel_members.members_of(channel_id)

    def snapshot(self, value: JSON) -> JSON:
        """A deep copy, so a handler's answer never aliases the stored object."""
        return copy.deepcopy(value)
