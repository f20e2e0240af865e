"""One-time migration of the plugin's legacy ``config.bots`` into agents.

Old plugin versions kept agents inside the configuration document, some with their service
embedded (``bot.service``). At start-up the registry moves embedded services into ``services[]``
(identical ones shared), turns each bot into an agent row without a creator (managed by system
admins), removes ``bots`` from the document, and records that it ran in Agents_System.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import uuid
from typing import Any

from services.index.registry.agents import AccessLevel, Agent, McpToolRef
from services.index.registry.bot_accounts import BotAccounts
from services.index.registry.config_store import ConfigStore, new_id, now_ms
from services.index.registry.store import AgentStore

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
MIGRATED_KEY = "legacy_config_bots_migrated"


def _service_key(service: JSON) -> str:
    return json.dumps({k: v for k, v in service.items() if k != "id"}, sort_keys=True)


def _ids(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _level(value: Any) -> AccessLevel:
    try:
        return AccessLevel(int(value or 0))
    except (TypeError, ValueError):
        return AccessLevel.ALL


def bot_to_agent(bot: JSON, service_id: str) -> Agent:
    """An agent row (no id, no creator yet) from a legacy BotConfig."""
    tools = tuple(
        McpToolRef(str(t.get("server_origin", "")), str(t.get("tool_name", "")))
        for t in bot.get("enabledMCPTools") or []
        if isinstance(t, dict)
    )
    return Agent(
        id="",
        bot_user_id=str(bot.get("botUserID") or ""),
        username=str(bot.get("name") or "").strip().lower(),
        service_id=service_id,
        display_name=str(bot.get("displayName") or bot.get("name") or ""),
        creator_id="",
        custom_instructions=str(bot.get("customInstructions") or ""),
        model=str(bot.get("model") or ""),
        enable_vision=bool(bot.get("enableVision")),
        disable_tools=bool(bot.get("disableTools")),
        channel_access_level=_level(bot.get("channelAccessLevel")),
        channel_ids=_ids(bot.get("channelIDs")),
        user_access_level=_level(bot.get("userAccessLevel")),
        user_ids=_ids(bot.get("userIDs")),
        team_ids=_ids(bot.get("teamIDs")),
        enabled_native_tools=_ids(bot.get("enabledNativeTools")),
        enabled_mcp_tools=tools,
        auto_enable_new_mcp_tools=bool(bot.get("autoEnableNewMCPTools")),
        mcp_dynamic_tool_loading=bool(bot.get("mcpDynamicToolLoading", True)),
        reasoning_enabled=bool(bot.get("reasoningEnabled", True)),
        reasoning_effort=str(bot.get("reasoningEffort") or ""),
        thinking_budget=int(bot.get("thinkingBudget") or 0),
        structured_output_enabled=bool(bot.get("structuredOutputEnabled")),
        max_file_size=int(bot.get("maxFileSize") or 0),
    )


def split_legacy_bots(config: JSON) -> tuple[JSON, list[Agent]]:
    """(document without ``bots`` and with embedded services moved to ``services[]``, agents)."""
    out = copy.deepcopy(config)
    bots = out.pop("bots", None) or []
    services: list[JSON] = list(out.get("services") or [])
    by_key = {_service_key(s): s["id"] for s in services if isinstance(s, dict) and s.get("id")}
    agents: list[Agent] = []
    for bot in bots:
        if not isinstance(bot, dict) or not bot.get("name"):
            continue
        service_id = str(bot.get("serviceID") or "")
        embedded = bot.get("service")
        if isinstance(embedded, dict) and embedded.get("type"):
            key = _service_key(embedded)
            if key not in by_key:
                moved = {**embedded, "id": embedded.get("id") or str(uuid.uuid4())}
                moved.setdefault("name", f"{bot['name']} service")
                services.append(moved)
                by_key[key] = moved["id"]
            service_id = by_key[key]
        agents.append(bot_to_agent(bot, service_id))
    out["services"] = services
    return out, agents


async def migrate_legacy_bots(config: ConfigStore, agents: AgentStore, bots: BotAccounts) -> int:
    """Run the migration once (under the configuration lock); the number of agents created."""
    async with config.locked() as tx:
        if await tx.system_value(MIGRATED_KEY):
            return 0
        active = await tx.active()
        created = 0
        if active is not None and active.config.get("bots"):
            document, legacy = split_legacy_bots(active.config)
            for agent in legacy:
                if await agents.get(username=agent.username) is not None:
                    continue
                bot_user_id = (
                    agent.bot_user_id
                    or await bots.user_id_of(agent.username)
                    or await bots.create(agent.username, agent.display_name)
                )
                now = now_ms()
                row = dataclasses.replace(agent, id=new_id(), bot_user_id=bot_user_id, create_at=now, update_at=now)
                await agents.insert(row, conn=tx.conn)
                created += 1
            await tx.write(document)
        await tx.set_system_value(MIGRATED_KEY, "true")
    if created:
        logger.info("migrated legacy config bots into agents", extra={"count": created})
    return created
