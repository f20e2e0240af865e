"""Reads and writes of the registry's tables. SQL lives here and nowhere else in the registry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import AlreadyExists
from services.index.registry.agents import AccessLevel, Agent, McpToolRef

# NOTIFY channel of agent writes (payload unused): every replica's in-process agent list listens.
AGENTS_CHANNEL = "agents_useragents"
# Taken by agent creation so the count-then-insert of the free-tier quota cannot interleave
# (the configuration lock is (12457, 1), the plugin's key; this is its neighbour).
CREATE_LOCK = (12457, 2)
_NOTIFY = text(f"SELECT pg_notify('{AGENTS_CHANNEL}', '')")

_AGENT_COLUMNS = """
    id, botuserid, username, serviceid, displayname, creatorid, custominstructions, model,
    enablevision, disabletools, channelaccesslevel, channelids, useraccesslevel, userids, teamids,
    adminuserids, enablednativetools, enabledtools, autoenablenewmcptools, mcp_dynamic_tool_loading,
    reasoningenabled, reasoningeffort, thinkingbudget, structuredoutputenabled, maxfilesize,
    lasticonupdate, createat, updateat, deleteat
"""


def _ids(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    value = json.loads(raw)
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _tool_refs(raw: str | None) -> tuple[McpToolRef, ...]:
    if not raw:
        return ()
    value = json.loads(raw)
    if not isinstance(value, list):
        return ()
    return tuple(
        McpToolRef(server_origin=str(v.get("server_origin", "")), tool_name=str(v.get("tool_name", "")))
        for v in value
        if isinstance(v, dict)
    )


def agent_from_row(row: Row[Any]) -> Agent:
    """The agent an Agents_UserAgents row holds (selected as ``_AGENT_COLUMNS``)."""
    m = row._mapping
    return Agent(
        id=m["id"],
        bot_user_id=m["botuserid"],
        username=m["username"],
        service_id=m["serviceid"],
        display_name=m["displayname"],
        creator_id=m["creatorid"],
        custom_instructions=m["custominstructions"],
        model=m["model"],
        enable_vision=m["enablevision"],
        disable_tools=m["disabletools"],
        channel_access_level=AccessLevel(m["channelaccesslevel"]),
        channel_ids=_ids(m["channelids"]),
        user_access_level=AccessLevel(m["useraccesslevel"]),
        user_ids=_ids(m["userids"]),
        team_ids=_ids(m["teamids"]),
        admin_user_ids=_ids(m["adminuserids"]),
        enabled_native_tools=_ids(m["enablednativetools"]),
        enabled_mcp_tools=_tool_refs(m["enabledtools"]),
        auto_enable_new_mcp_tools=m["autoenablenewmcptools"],
        mcp_dynamic_tool_loading=m["mcp_dynamic_tool_loading"],
        reasoning_enabled=m["reasoningenabled"],
        reasoning_effort=m["reasoningeffort"],
        thinking_budget=m["thinkingbudget"],
        structured_output_enabled=m["structuredoutputenabled"],
        max_file_size=m["maxfilesize"],
        last_icon_update=m["lasticonupdate"],
        create_at=m["createat"],
        update_at=m["updateat"],
        delete_at=m["deleteat"],
    )


def agent_params(agent: Agent) -> dict[str, Any]:
    """Column values of an agent, JSON columns encoded as the plugin stores them."""
    return {
        "id": agent.id,
        "botuserid": agent.bot_user_id,
        "username": agent.username,
        "serviceid": agent.service_id,
        "displayname": agent.display_name,
        "creatorid": agent.creator_id,
        "custominstructions": agent.custom_instructions,
        "model": agent.model,
        "enablevision": agent.enable_vision,
        "disabletools": agent.disable_tools,
        "channelaccesslevel": int(agent.channel_access_level),
        "channelids": json.dumps(list(agent.channel_ids)),
        "useraccesslevel": int(agent.user_access_level),
        "userids": json.dumps(list(agent.user_ids)),
        "teamids": json.dumps(list(agent.team_ids)),
        "adminuserids": json.dumps(list(agent.admin_user_ids)),
        "enablednativetools": json.dumps(list(agent.enabled_native_tools)),
        "enabledtools": json.dumps(
            [{"server_origin": t.server_origin, "tool_name": t.tool_name} for t in agent.enabled_mcp_tools]
        ),
        "autoenablenewmcptools": agent.auto_enable_new_mcp_tools,
        "mcp_dynamic_tool_loading": agent.mcp_dynamic_tool_loading,
        "reasoningenabled": agent.reasoning_enabled,
        "reasoningeffort": agent.reasoning_effort,
        "thinkingbudget": agent.thinking_budget,
        "structuredoutputenabled": agent.structured_output_enabled,
        "maxfilesize": agent.max_file_size,
        "lasticonupdate": agent.last_icon_update,
        "createat": agent.create_at,
        "updateat": agent.update_at,
        "deleteat": agent.delete_at,
    }


class AgentStore:
    """Agents_UserAgents. Writes that read first take the row lock (SELECT ... FOR UPDATE), so
    concurrent edits of one agent serialise: the last write wins whole, never a torn row."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._write_hooks: list[Callable[[], None]] = []

    def on_write(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after each write this process commits (or attempts)."""
        self._write_hooks.append(hook)

    def _written(self) -> None:
        for hook in self._write_hooks:
            hook()

    async def list_active(self) -> list[Agent]:
        """Agents not deleted, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT {_AGENT_COLUMNS} FROM agents_useragents WHERE deleteat = 0 ORDER BY createat, id")
            )
            return [agent_from_row(r) for r in rows]

    async def count_active(self, conn: AsyncConnection | None = None) -> int:
        """Agents not deleted, counted inside ``conn``'s transaction when given."""
        if conn is None:
            async with self.engine.connect() as own:
                return await self.count_active(own)
        count: int = await conn.scalar(text("SELECT count(*) FROM agents_useragents WHERE deleteat = 0"))
        return count

    async def usernames_using_service(self, service_id: str) -> list[str]:
        """Usernames of the active agents configured with the service."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT username FROM agents_useragents WHERE deleteat = 0 AND serviceid = :s"), {"s": service_id}
            )
            return [r.username for r in rows]

    async def get(self, *, id: str = "", username: str = "", bot_user_id: str = "") -> Agent | None:
        """The active agent with the first non-empty key given, or None."""
        column, value = next((c, v) for c, v in (("id", id), ("username", username), ("botuserid", bot_user_id)) if v)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_AGENT_COLUMNS} FROM agents_useragents WHERE {column} = :v AND deleteat = 0"),
                    {"v": value},
                )
            ).first()
        return agent_from_row(row) if row else None

    async def had_bot(self, bot_user_id: str) -> bool:
        """Whether a deleted agent owned the bot (its username may then be taken over)."""
        async with self.engine.connect() as conn:
            row = await conn.execute(
                text("SELECT 1 FROM agents_useragents WHERE botuserid = :b AND deleteat > 0 LIMIT 1"),
                {"b": bot_user_id},
            )
            return row.first() is not None

    async def insert(self, agent: Agent, conn: AsyncConnection | None = None) -> None:
        """Insert a row; AlreadyExists when an active agent has the username or bot."""
        params = agent_params(agent)
        columns = ", ".join(params)
        values = ", ".join(f":{k}" for k in params)
        statement = text(f"INSERT INTO agents_useragents ({columns}) VALUES ({values})")
        try:
            if conn is not None:
                async with conn.begin_nested():
                    await conn.execute(statement, params)
                    await conn.execute(_NOTIFY)
            else:
                async with self.engine.begin() as own:
                    await own.execute(statement, params)
                    await own.execute(_NOTIFY)
        except IntegrityError:
            raise AlreadyExists(f"an agent with username {agent.username} already exists") from None
        finally:
            self._written()

    @asynccontextmanager
    async def creating(self) -> AsyncIterator[AsyncConnection]:
        """A transaction holding the creation lock: concurrent creations on any replica queue here,
        so a quota check and the insert it allows happen as one step."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": CREATE_LOCK[0], "b": CREATE_LOCK[1]}
                )
                yield conn
        finally:
            self._written()

    @asynccontextmanager
    async def locked(self, agent_id: str) -> AsyncIterator[tuple[AsyncConnection, Agent | None]]:
        """A transaction holding the row lock of an active agent (None if there is no such agent)."""
        try:
            async with self.engine.begin() as conn:
                row = (
                    await conn.execute(
                        text(
                            f"SELECT {_AGENT_COLUMNS} FROM agents_useragents WHERE id = :id AND deleteat = 0 FOR UPDATE"
                        ),
                        {"id": agent_id},
                    )
                ).first()
                yield conn, agent_from_row(row) if row else None
        finally:
            # After the commit: a read that follows this write on this replica never sees it stale.
            self._written()

    async def replace(self, conn: AsyncConnection, agent: Agent) -> None:
        """Write every column of a locked row."""
        params = agent_params(agent)
        assignments = ", ".join(f"{k} = :{k}" for k in params if k != "id")
        await conn.execute(text(f"UPDATE agents_useragents SET {assignments} WHERE id = :id"), params)
        # Delivered at commit to every replica (this one too).
        await conn.execute(_NOTIFY)
