"""What a request's JSON body and parameters may hold, checked once for every route.

Whatever a route does with its input, strings end up in protobuf (valid UTF-8 only, so no lone
surrogates) and PostgreSQL (whose text and jsonb refuse NUL), JSON nesting in protobuf messages
(decoded at most 100 messages deep, and a Struct spends three per JSON object), and integers in
fields of at most 64 bits. Input that breaks one of these is a 400 naming where it is, not a 500
three hops away.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.common.errors import InvalidInput
from services.gateway.proto_json import INT64_MAX, INT64_MIN

# Deep enough for any body the plugin's clients send (a JSON schema included), shallow enough
# that a Struct holding what is left under the top-level object still decodes.
MAX_DEPTH = 32
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Mattermost's ids: 26 characters of its base32 alphabet (lowercase letters and digits).
_MATTERMOST_ID = re.compile("[a-z0-9]{26}")
# Path parameters that name a Mattermost object, on whichever route.
MATTERMOST_ID_PARAMETERS = frozenset({"postid", "channelid", "fileid"})


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON; InvalidInput (400) naming the limit or the JSON path it breaks."""
    if not raw.strip():
        raise InvalidInput("request body is empty; expected JSON")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None
    _check(value)
    return value


def _too_deep() -> InvalidInput:
    return InvalidInput(f"request body nests JSON deeper than {MAX_DEPTH} levels")


def _check(root: Any) -> None:
    # Iterative: the depth being checked is the one a recursive walk could not survive.
    pending: list[tuple[Any, str, int]] = [(root, "", 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            check_text(value, path)
        elif isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise InvalidInput(f"{_name(path)} is out of the 64-bit integer range", field=path)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _too_deep()
            if isinstance(value, list):
                pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))
                continue
            for key, item in value.items():
                check_text(key, path, key=True)
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))


def check_text(text: str, path: str, *, key: bool = False) -> None:
    """InvalidInput naming ``path`` when ``text`` holds what protobuf or PostgreSQL cannot."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    what = "a NUL character (\\u0000)" if found.group() == "\x00" else "an unpaired UTF-16 surrogate"
    where = f"a key of {_name(path)}" if key else _name(path)
    raise InvalidInput(f"{where} contains {what}, which is not accepted", field=path)


def _name(path: str) -> str:
    return path or "the request body"


def check_mattermost_id(value: object, field: str) -> None:
    """InvalidInput (400) naming ``field`` unless ``value`` has the shape of a Mattermost id: nothing
    else names a Mattermost object, so asking Mattermost about it (or sending it 10,000 characters)
    would be for nothing."""
    if not isinstance(value, str) or _MATTERMOST_ID.fullmatch(value) is None:
        raise InvalidInput(f"{field} must be a Mattermost id (26 lowercase letters and digits)", field=field)


def check_optional_mattermost_id(value: object, field: str) -> None:
    """As ``check_mattermost_id``, where an empty value means none (no scope, no channel)."""
    if value:
        check_mattermost_id(value, field)
