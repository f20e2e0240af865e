"""Typed views of the Mattermost REST v4 objects the project uses.

Each dataclass keeps only the fields some service reads (plus ``props`` for posts) and is built
with ``from_json`` from a response body. Parsing is lenient: the official spec marks no field as
required and servers omit empty ones, so a missing field takes its zero value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SYSTEM_ADMIN_ROLE = "system_admin"


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class User:
    """A Mattermost user or bot account (``#/components/schemas/User``)."""

    id: str
    username: str
    first_name: str = ""
    last_name: str = ""
    nickname: str = ""
    email: str = ""
    position: str = ""
    roles: str = ""
    locale: str = ""
    timezone: dict[str, Any] = field(default_factory=dict)
    is_bot: bool = False
    delete_at: int = 0
    last_picture_update: int = 0

    @property
    def role_names(self) -> frozenset[str]:
        """The space-separated ``roles`` string as a set."""
        return frozenset(self.roles.split())

    @property
    def is_system_admin(self) -> bool:
        """Whether the user holds ``system_admin`` (and so every permission, ``manage_system`` too)."""
        return SYSTEM_ADMIN_ROLE in self.role_names

    @property
    def is_active(self) -> bool:
        """Deactivated users keep their row with a non-zero ``delete_at``."""
        return self.delete_at == 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        """Build from a User JSON object."""
        return cls(
            id=_str(data, "id"),
            username=_str(data, "username"),
            first_name=_str(data, "first_name"),
            last_name=_str(data, "last_name"),
            nickname=_str(data, "nickname"),
            email=_str(data, "email"),
            position=_str(data, "position"),
            roles=_str(data, "roles"),
            locale=_str(data, "locale"),
            timezone=_dict(data, "timezone"),
            is_bot=bool(data.get("is_bot", False)),
            delete_at=_int(data, "delete_at"),
            last_picture_update=_int(data, "last_picture_update"),
        )


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel: ``O`` open, ``P`` private, ``D`` direct message, ``G`` group message."""

    id: str
    type: str
    team_id: str = ""
    name: str = ""
    display_name: str = ""
    header: str = ""
    purpose: str = ""
    creator_id: str = ""
    last_post_at: int = 0
    delete_at: int = 0

    @property
    def is_direct(self) -> bool:
        """A 1:1 direct message channel."""
        return self.type == "D"

    @property
    def is_group(self) -> bool:
        """A group message channel (3-8 users, no team)."""
        return self.type == "G"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Channel:
        """Build from a Channel JSON object."""
        return cls(
            id=_str(data, "id"),
            type=_str(data, "type"),
            team_id=_str(data, "team_id"),
            name=_str(data, "name"),
            display_name=_str(data, "display_name"),
            header=_str(data, "header"),
            purpose=_str(data, "purpose"),
            creator_id=_str(data, "creator_id"),
            last_post_at=_int(data, "last_post_at"),
            delete_at=_int(data, "delete_at"),
        )


@dataclass(frozen=True, slots=True)
class ChannelMember:
    """A user's membership of a channel."""

    channel_id: str
    user_id: str
    roles: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelMember:
        """Build from a ChannelMember JSON object."""
        return cls(channel_id=_str(data, "channel_id"), user_id=_str(data, "user_id"), roles=_str(data, "roles"))


@dataclass(frozen=True, slots=True)
class Team:
    """A team (``O`` open invite, ``I`` invite only)."""

    id: str
    name: str
    display_name: str = ""
    type: str = ""
    delete_at: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Team:
        """Build from a Team JSON object."""
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            display_name=_str(data, "display_name"),
            type=_str(data, "type"),
            delete_at=_int(data, "delete_at"),
        )


@dataclass(frozen=True, slots=True)
class TeamMember:
    """A user's membership of a team; ``delete_at`` is non-zero once the user left."""

    team_id: str
    user_id: str
    roles: str = ""
    delete_at: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeamMember:
        """Build from a TeamMember JSON object."""
        return cls(
            team_id=_str(data, "team_id"),
            user_id=_str(data, "user_id"),
            roles=_str(data, "roles"),
            delete_at=_int(data, "delete_at"),
        )


@dataclass(frozen=True, slots=True)
class Post:
    """A post; ``root_id`` is empty for a thread's root."""

    id: str
    channel_id: str
    user_id: str
    message: str = ""
    root_id: str = ""
    type: str = ""
    props: dict[str, Any] = field(default_factory=dict)
    file_ids: tuple[str, ...] = ()
    create_at: int = 0
    update_at: int = 0
    edit_at: int = 0
    delete_at: int = 0

    @property
    def thread_root_id(self) -> str:
        """The id of the thread this post belongs to (its own id for a root post)."""
        return self.root_id or self.id

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Post:
        """Build from a Post JSON object."""
        file_ids = data.get("file_ids")
        return cls(
            id=_str(data, "id"),
            channel_id=_str(data, "channel_id"),
            user_id=_str(data, "user_id"),
            message=_str(data, "message"),
            root_id=_str(data, "root_id"),
            type=_str(data, "type"),
            props=_dict(data, "props"),
            file_ids=tuple(f for f in file_ids if isinstance(f, str)) if isinstance(file_ids, list) else (),
            create_at=_int(data, "create_at"),
            update_at=_int(data, "update_at"),
            edit_at=_int(data, "edit_at"),
            delete_at=_int(data, "delete_at"),
        )


def posts_from_post_list(data: dict[str, Any]) -> list[Post]:
    """The posts of a PostList in its ``order`` (ids missing from ``posts`` are skipped)."""
    posts = _dict(data, "posts")
    order = data.get("order")
    ids = [i for i in order if isinstance(i, str)] if isinstance(order, list) else list(posts)
    return [Post.from_json(posts[i]) for i in ids if isinstance(posts.get(i), dict)]


@dataclass(frozen=True, slots=True)
class Reaction:
    """An emoji reaction of a user to a post."""

    user_id: str
    post_id: str
    emoji_name: str
    create_at: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reaction:
        """Build from a Reaction JSON object."""
        return cls(
            user_id=_str(data, "user_id"),
            post_id=_str(data, "post_id"),
            emoji_name=_str(data, "emoji_name"),
            create_at=_int(data, "create_at"),
        )


@dataclass(frozen=True, slots=True)
class FileInfo:
    """Metadata of an uploaded file; the bytes come from ``get_file``."""

    id: str
    name: str
    size: int = 0
    mime_type: str = ""
    extension: str = ""
    user_id: str = ""
    post_id: str = ""
    width: int = 0
    height: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileInfo:
        """Build from a FileInfo JSON object."""
        return cls(
            id=_str(data, "id"),
            name=_str(data, "name"),
            size=_int(data, "size"),
            mime_type=_str(data, "mime_type"),
            extension=_str(data, "extension"),
            user_id=_str(data, "user_id"),
            post_id=_str(data, "post_id"),
            width=_int(data, "width"),
            height=_int(data, "height"),
        )


@dataclass(frozen=True, slots=True)
class Bot:
    """A bot account; ``user_id`` is the id of its User row."""

    user_id: str
    username: str
    display_name: str = ""
    description: str = ""
    owner_id: str = ""
    delete_at: int = 0

    @property
    def is_enabled(self) -> bool:
        """Disabled bots keep their row with a non-zero ``delete_at``."""
        return self.delete_at == 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bot:
        """Build from a Bot JSON object."""
        return cls(
            user_id=_str(data, "user_id"),
            username=_str(data, "username"),
            display_name=_str(data, "display_name"),
            description=_str(data, "description"),
            owner_id=_str(data, "owner_id"),
            delete_at=_int(data, "delete_at"),
        )


@dataclass(frozen=True, slots=True)
class WebSocketEvent:
    """One event from ``/api/v4/websocket``.

    ``data`` is the event's data with ``post`` decoded from the JSON string Mattermost sends for
    ``posted``/``post_edited`` (``mentions`` likewise, to a list); ``post`` is that post parsed.
    """

    event: str
    data: dict[str, Any]
    broadcast: dict[str, Any]
    seq: int
    post: Post | None = None

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> WebSocketEvent:
        """Build from one event frame, decoding the JSON-in-a-string fields."""
        data = dict(_dict(message, "data"))
        post: Post | None = None
        for key in ("post", "mentions"):
            raw = data.get(key)
            if isinstance(raw, str):
                try:
                    data[key] = json.loads(raw)
                except ValueError:
                    # Keep the string: an undecodable field must not cost the whole event.
                    continue
        if isinstance(data.get("post"), dict):
            post = Post.from_json(data["post"])
        return cls(
            event=_str(message, "event"),
            data=data,
            broadcast=_dict(message, "broadcast"),
            seq=_int(message, "seq"),
            post=post,
        )


@dataclass(frozen=True)
class UserAccessToken:
    """A personal access token; ``token`` is the secret and never appears in ``repr``."""

    id: str
    user_id: str
    token: str = field(default="", repr=False)
    description: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserAccessToken:
        return cls(
            id=_str(data, "id"),
            user_id=_str(data, "user_id"),
            token=_str(data, "token"),
            description=_str(data, "description"),
        )
