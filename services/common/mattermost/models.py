"""Typed views of the Mattermost REST v4 objects the project uses.

Each model keeps only the fields some service reads (plus ``props`` for posts) and is built with
``from_json`` from a response body. Parsing is lenient: the official spec marks no field as
required and servers omit empty ones, so a missing field, or one of another type, takes its zero
value; fields a model does not declare are ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError

SYSTEM_ADMIN_ROLE = "system_admin"


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list | tuple) else ()


# Mattermost sends a boolean; any other JSON value counts by its truthiness.
Truthy = Annotated[bool, BeforeValidator(bool)]
# The strings of a list, the other items dropped.
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]


class MattermostObject(BaseModel):
    """Base of the models: immutable, decoded leniently by ``from_json``. Scalar fields are strict
    (``"12"`` is no int, ``true`` no 1): a value of another type takes the zero value, not a guess."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Build from a JSON object (a dict, as ``json.loads`` returns it)."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            # Rare (a body this client did not expect): decode again without the bad fields, so
            # that they take their zero values. The common, well-formed case pays nothing for this.
            bad = {e["loc"][0] for e in err.errors() if e["loc"]}
            if not bad or not isinstance(data, dict):
                raise
            return cls.model_validate({k: v for k, v in data.items() if k not in bad})


class User(MattermostObject):
    """A Mattermost user or bot account (``#/components/schemas/User``)."""

    id: StrictStr = ""
    username: StrictStr = ""
    first_name: StrictStr = ""
    last_name: StrictStr = ""
    nickname: StrictStr = ""
    email: StrictStr = ""
    position: StrictStr = ""
    roles: StrictStr = ""
    locale: StrictStr = ""
    timezone: dict[str, Any] = Field(default_factory=dict)
    is_bot: Truthy = False
    delete_at: StrictInt = 0
    last_picture_update: StrictInt = 0

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

    @property
    def preferred_timezone(self) -> str:
        """The IANA zone Mattermost shows the user ("" when unknown): the automatic one unless they
        chose one (the spec's ``useAutomaticTimezone`` defaults to "true")."""
        if str(self.timezone.get("useAutomaticTimezone", "true")).lower() == "true":
            return str(self.timezone.get("automaticTimezone", ""))
        return str(self.timezone.get("manualTimezone", ""))


class Channel(MattermostObject):
    """A channel: ``O`` open, ``P`` private, ``D`` direct message, ``G`` group message."""

    id: StrictStr = ""
    type: StrictStr = ""
    team_id: StrictStr = ""
    name: StrictStr = ""
    display_name: StrictStr = ""
    header: StrictStr = ""
    purpose: StrictStr = ""
    creator_id: StrictStr = ""
    last_post_at: StrictInt = 0
    total_msg_count: StrictInt = 0
    delete_at: StrictInt = 0

    @property
    def is_direct(self) -> bool:
        """A 1:1 direct message channel."""
        return self.type == "D"

    @property
    def is_group(self) -> bool:
        """A group message channel (3-8 users, no team)."""
        return self.type == "G"


class ChannelMember(MattermostObject):
    """A user's membership of a channel; ``last_viewed_at`` (ms) bounds the user's unread posts."""

    channel_id: StrictStr = ""
    user_id: StrictStr = ""
    last_viewed_at: StrictInt = 0
    roles: StrictStr = ""


class Team(MattermostObject):
    """A team (``O`` open invite, ``I`` invite only)."""

    id: StrictStr = ""
    name: StrictStr = ""
    display_name: StrictStr = ""
    type: StrictStr = ""
    delete_at: StrictInt = 0


class TeamMember(MattermostObject):
    """A user's membership of a team; ``delete_at`` is non-zero once the user left."""

    team_id: StrictStr = ""
    user_id: StrictStr = ""
    roles: StrictStr = ""
    delete_at: StrictInt = 0


def truthy(value: Any) -> bool:
    """A post prop set to true (Mattermost stores booleans in props as true or "true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


class Post(MattermostObject):
    """A post; ``root_id`` is empty for a thread's root."""

    id: StrictStr = ""
    channel_id: StrictStr = ""
    user_id: StrictStr = ""
    message: StrictStr = ""
    root_id: StrictStr = ""
    type: StrictStr = ""
    props: dict[str, Any] = Field(default_factory=dict)
    file_ids: Strings = ()
    create_at: StrictInt = 0
    update_at: StrictInt = 0
    edit_at: StrictInt = 0
    delete_at: StrictInt = 0

    @property
    def from_bot(self) -> bool:
        """Posted by a bot or through a webhook (Mattermost marks both in props)."""
        return truthy(self.props.get("from_bot")) or truthy(self.props.get("from_webhook"))

    @property
    def thread_root_id(self) -> str:
        """The id of the thread this post belongs to (its own id for a root post)."""
        return self.root_id or self.id


def posts_from_post_list(data: dict[str, Any]) -> list[Post]:
    """The posts of a PostList in its ``order`` (ids missing from ``posts`` are skipped)."""
    posts = data.get("posts")
    posts = posts if isinstance(posts, dict) else {}
    order = data.get("order")
    ids = [i for i in order if isinstance(i, str)] if isinstance(order, list) else list(posts)
    return [Post.from_json(posts[i]) for i in ids if isinstance(posts.get(i), dict)]


class Reaction(MattermostObject):
    """An emoji reaction of a user to a post."""

    user_id: StrictStr = ""
    post_id: StrictStr = ""
    emoji_name: StrictStr = ""
    create_at: StrictInt = 0


class FileInfo(MattermostObject):
    """Metadata of an uploaded file; the bytes come from ``get_file``."""

    id: StrictStr = ""
    name: StrictStr = ""
    size: StrictInt = 0
    mime_type: StrictStr = ""
    extension: StrictStr = ""
    user_id: StrictStr = ""
    post_id: StrictStr = ""
    width: StrictInt = 0
    height: StrictInt = 0


class Bot(MattermostObject):
    """A bot account; ``user_id`` is the id of its User row."""

    user_id: StrictStr = ""
    username: StrictStr = ""
    display_name: StrictStr = ""
    description: StrictStr = ""
    owner_id: StrictStr = ""
    delete_at: StrictInt = 0

    @property
    def is_enabled(self) -> bool:
        """Disabled bots keep their row with a non-zero ``delete_at``."""
        return self.delete_at == 0


class WebSocketEvent(MattermostObject):
    """One event from ``/api/v4/websocket``.

    ``data`` is the event's data with ``post`` decoded from the JSON string Mattermost sends for
    ``posted``/``post_edited`` (``mentions`` likewise, to a list); ``post`` is that post parsed.
    """

    event: StrictStr = ""
    data: dict[str, Any] = Field(default_factory=dict)
    broadcast: dict[str, Any] = Field(default_factory=dict)
    seq: StrictInt = 0
    post: Post | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Build from one event frame, decoding the JSON-in-a-string fields."""
        raw_data = data.get("data")
        decoded = dict(raw_data) if isinstance(raw_data, dict) else {}
        for key in ("post", "mentions"):
            raw = decoded.get(key)
            if isinstance(raw, str):
                try:
                    decoded[key] = json.loads(raw)
                except ValueError:
                    # Keep the string: an undecodable field must not cost the whole event.
                    continue
        post = decoded.get("post")
        parsed = Post.from_json(post) if isinstance(post, dict) else None
        return super().from_json({**data, "data": decoded, "post": parsed})


class UserAccessToken(MattermostObject):
    """A personal access token; ``token`` is the secret and never appears in ``repr``."""

    id: StrictStr = ""
    user_id: StrictStr = ""
    token: StrictStr = Field(default="", repr=False)
    description: StrictStr = ""
