"""Each user's MCP tool preferences (the RHS tools popover): the servers the user turned off.

Stored in Agents_System under the plugin's KV key ``user_tool_providers_<userID>`` (a key of 45
characters fits its 64), so they need no table of their own and no migration.
"""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import InvalidInput, PermissionDenied
from services.common.identity import Identity
from services.index.registry.config_store import ConfigTx

# The plugin's limits on PUT /mcp/user-preferences.
MAX_DISABLED_SERVERS = 256
MAX_SERVER_RUNES = 512
_KEY_PREFIX = "user_tool_providers_"


def normalise_disabled_servers(servers: list[str]) -> list[str]:
    """Trimmed, without blanks or repeats, sorted; ``InvalidInput`` past the plugin's limits."""
    if len(servers) > MAX_DISABLED_SERVERS:
        raise InvalidInput(f"disabled_servers holds at most {MAX_DISABLED_SERVERS} servers", field="disabled_servers")
    kept = {s.strip() for s in servers} - {""}
    if any(len(s) > MAX_SERVER_RUNES for s in kept):
        raise InvalidInput(
            f"each entry of disabled_servers is at most {MAX_SERVER_RUNES} characters", field="disabled_servers"
        )
    return sorted(kept)


class UserToolPreferences:
    """Reads and replaces a user's disabled MCP servers."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def disabled_servers(self, caller: Identity, user_id: str) -> list[str]:
        """The servers ``user_id`` ("" for the caller) turned off; another user's only for cluster
        services (the tools service reads them for whichever service asks it for a user's tools)."""
        if user_id and user_id != caller.user_id and not caller.internal:
            raise PermissionDenied("a user's tool preferences are the user's own")
        user_id = user_id or _require_user(caller)
        async with self.engine.connect() as conn:
            stored = await ConfigTx(conn).system_value(_key(user_id))
        return list(json.loads(stored)["disabled_servers"]) if stored else []

    async def set_disabled_servers(self, caller: Identity, servers: list[str]) -> list[str]:
        """Replace the caller's disabled servers; the stored (normalised) list."""
        user_id = _require_user(caller)
        kept = normalise_disabled_servers(servers)
        async with self.engine.begin() as conn:
            await ConfigTx(conn).set_system_value(_key(user_id), json.dumps({"disabled_servers": kept}))
        return kept


def _key(user_id: str) -> str:
    # Agents_System keys hold 64 characters; Mattermost ids have 26.
    if len(user_id) > 64 - len(_KEY_PREFIX):
        raise InvalidInput("user_id is not a Mattermost user id", field="user_id")
    return _KEY_PREFIX + user_id


def _require_user(caller: Identity) -> str:
    if not caller.user_id:
        raise InvalidInput("tool preferences belong to a user; the call names none", field="user_id")
    return caller.user_id
