"""Which built-in tools exist, what they take (JSON schema), and whether they write.

Tool names and parameters follow the plugin's embedded Mattermost tools (``read_post``,
``read_channel``, ``search_posts``, ...) so prompts and admin policies written for the plugin
keep working. MCP tools are not listed here: the mcp service owns them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from services.common.errors import InvalidInput


class ToolFamily(enum.StrEnum):
    """Where a tool's data comes from; decides which agent setting offers it."""

    MATTERMOST = "mattermost"
    WEB = "web"
    # Answered by the requesting user, never run here: the conversation loop pauses on it.
    USER = "user"
    # A remote MCP server's tool, listed and run through the mcp service.
    MCP = "mcp"


# The agent's MCP tab names Mattermost tools with this origin (the plugin's embedded server).
MATTERMOST_ORIGIN = "embedded://mattermost"


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, description for the model, argument schema and side effects; a remote
    MCP tool also names its server (``server_origin``)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    family: ToolFamily
    writes: bool = False
    server_origin: str = ""


def _schema(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_STR = {"type": "string"}

# A channel analysis (POST /channel/{id}/analyze) force-loads these two, bound to its channel.
CHANNEL_ANALYSIS_TOOLS = ("read_channel", "get_channel_info")
# The arguments that pick a channel, which a bound tool does not take.
_CHANNEL_ARGUMENTS = frozenset({"channel_id", "channel_name", "team_id"})

BUILTIN_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "read_post",
        "Read a Mattermost post and, by default, the rest of its thread.",
        _schema(
            {"post_id": {**_STR, "description": "Id of the post."}, "include_thread": {"type": "boolean"}},
            ("post_id",),
        ),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "read_channel",
        "Read the most recent posts of a Mattermost channel, oldest first.",
        _schema(
            {
                "channel_id": _STR,
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Default 20."},
            },
            ("channel_id",),
        ),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "search_posts",
        "Search Mattermost posts the user can read (semantic search when enabled, else keywords).",
        _schema(
            {
                "query": _STR,
                "team_id": _STR,
                "channel_id": _STR,
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "Default 10."},
            },
            ("query",),
        ),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "search_users",
        "Look up Mattermost users by username, name or nickname.",
        _schema({"term": _STR, "limit": {"type": "integer", "minimum": 1, "maximum": 100}}, ("term",)),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "get_channel_info",
        "Information about a channel, by id or by (partial) name within a team.",
        _schema({"channel_id": _STR, "channel_name": _STR, "team_id": _STR}),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "get_team_info",
        "Information about a team the user belongs to, by id or name.",
        _schema({"team_id": _STR, "team_name": _STR}),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "create_post",
        "Create a post (or a reply with root_id) in a channel the user can post in.",
        _schema({"channel_id": _STR, "message": _STR, "root_id": _STR}, ("channel_id", "message")),
        ToolFamily.MATTERMOST,
        writes=True,
    ),
    ToolSpec(
        "create_channel",
        "Create a public (type O, the default) or private (type P) channel in a team the user belongs to.",
        _schema(
            {
                "team_id": _STR,
                "name": {**_STR, "description": "URL name: lowercase letters, digits, '-' and '_'."},
                "display_name": _STR,
                "type": {**_STR, "enum": ["O", "P"]},
                "purpose": _STR,
                "header": _STR,
            },
            ("team_id", "name", "display_name"),
        ),
        ToolFamily.MATTERMOST,
        writes=True,
    ),
    ToolSpec(
        "get_channel_members",
        "List the members of a channel the user can read.",
        _schema({"channel_id": _STR, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}, ("channel_id",)),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "get_team_members",
        "List the members of a team the user belongs to.",
        _schema({"team_id": _STR, "limit": {"type": "integer", "minimum": 1, "maximum": 200}}, ("team_id",)),
        ToolFamily.MATTERMOST,
    ),
    ToolSpec(
        "web_search",
        "Search the web. At most 3 searches per conversation and never the same query twice; "
        "cite results by their URL.",
        _schema({"query": {**_STR, "minLength": 3}}, ("query",)),
        ToolFamily.WEB,
    ),
    ToolSpec(
        "web_fetch",
        "Fetch the text of a page returned by web_search in this conversation.",
        _schema({"url": _STR}, ("url",)),
        ToolFamily.WEB,
    ),
    ToolSpec(
        "ask_user_question",
        "Ask the user a multiple-choice question and wait for the answer. Use it only when a choice "
        "that is the user's to make blocks the task; the option the user picks is the result.",
        _schema(
            {
                "question": {**_STR, "description": "The question, in one or two sentences."},
                "options": {
                    "type": "array",
                    "items": _STR,
                    "minItems": 2,
                    "maxItems": 6,
                    "description": "The distinct choices, each a short phrase.",
                },
            },
            ("question", "options"),
        ),
        ToolFamily.USER,
    ),
)

_BY_NAME = {spec.name: spec for spec in BUILTIN_TOOLS}


def find_tool(name: str) -> ToolSpec | None:
    """The built-in tool called ``name``, or None."""
    return _BY_NAME.get(name)


T = TypeVar("T")


def first_of_each_name(tools: Iterable[T], name: Callable[[T], str], taken: Iterable[str]) -> list[T]:
    """The tools in order, less those whose name is in ``taken`` or came earlier: in a clash the
    built-in tool wins, then the first server in the configuration (the plugin's rule)."""
    seen = set(taken)
    unique = []
    for tool in tools:
        if name(tool) not in seen:
            seen.add(name(tool))
            unique.append(tool)
    return unique


def require_tool(name: str) -> ToolSpec:
    """The built-in tool called ``name``; InvalidInput naming ``tool_name`` when there is none."""
    spec = _BY_NAME.get(name)
    if spec is None:
        raise InvalidInput(f"unknown tool {name!r}", field="tool_name")
    return spec


_JSON_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "boolean": (bool,), "integer": (int, float)}


def validate_arguments(spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check ``arguments`` against the tool's schema; returns them with integers as ``int``.

    Only the schema features the built-in tools use (types, required, bounds, no extra keys).
    Raises InvalidInput naming the offending argument.
    """
    properties: dict[str, Any] = spec.input_schema["properties"]
    checked: dict[str, Any] = {}
    for key, value in arguments.items():
        rule = properties.get(key)
        if rule is None:
            raise InvalidInput(f"{spec.name} takes no argument {key!r}", field=f"arguments.{key}")
        kind = rule["type"]
        ok = isinstance(value, _JSON_TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool))
        if kind == "integer" and ok and float(value) != int(value):
            ok = False
        if not ok:
            raise InvalidInput(f"{spec.name}: {key} must be a {kind}", field=f"arguments.{key}")
        if kind == "integer":
            value = int(value)
            if value < rule.get("minimum", value) or value > rule.get("maximum", value):
                raise InvalidInput(
                    f"{spec.name}: {key} must be between {rule.get('minimum')} and {rule.get('maximum')}",
                    field=f"arguments.{key}",
                )
        if kind == "string" and len(value.strip()) < rule.get("minLength", 0):
            raise InvalidInput(
                f"{spec.name}: {key} must have at least {rule['minLength']} characters", field=f"arguments.{key}"
            )
        if value not in rule.get("enum", (value,)):
            raise InvalidInput(f"{spec.name}: {key} must be one of {', '.join(rule['enum'])}", field=f"arguments.{key}")
        checked[key] = value
    for key in spec.input_schema["required"]:
        if key not in checked or checked[key] in ("", None):
            raise InvalidInput(f"{spec.name}: {key} is required", field=f"arguments.{key}")
    return checked


def bound_to_channel(spec: ToolSpec) -> ToolSpec:
    """The tool as a channel analysis offers it: without the arguments that pick a channel."""
    properties = {k: v for k, v in spec.input_schema["properties"].items() if k not in _CHANNEL_ARGUMENTS}
    required = tuple(k for k in spec.input_schema["required"] if k in properties)
    return replace(spec, input_schema=_schema(properties, required))


def bound_arguments(spec: ToolSpec, arguments: dict[str, Any], channel_id: str) -> dict[str, Any]:
    """A bound tool's checked arguments: whatever channel the model named, the analysis's own."""
    own = {k: v for k, v in arguments.items() if k not in _CHANNEL_ARGUMENTS}
    return {**validate_arguments(bound_to_channel(spec), own), "channel_id": channel_id}
