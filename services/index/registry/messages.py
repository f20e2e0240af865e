"""Conversions between registry domain objects and agents.registry.v1 messages."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from agents.common.v1 import common_pb2 as common_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from services.index.registry.agents import AccessLevel, Agent, McpToolRef

logger = logging.getLogger(__name__)


def agent_to_message(agent: Agent, *, include_instructions: bool = True) -> registry_pb2.Agent:
    """The message of an agent; ``include_instructions=False`` blanks its custom instructions."""
    return registry_pb2.Agent(
        id=agent.id,
        username=agent.username,
        display_name=agent.display_name,
        custom_instructions=agent.custom_instructions if include_instructions else "",
        service_id=agent.service_id,
        model=agent.model,
        enable_vision=agent.enable_vision,
        disable_tools=agent.disable_tools,
        channel_access_level=registry_pb2.AccessLevel.ValueType(agent.channel_access_level),
        channel_ids=agent.channel_ids,
        user_access_level=registry_pb2.AccessLevel.ValueType(agent.user_access_level),
        user_ids=agent.user_ids,
        team_ids=agent.team_ids,
        enabled_native_tools=agent.enabled_native_tools,
        enabled_mcp_tools=[
            common_pb2.ToolRef(server_origin=t.server_origin, tool_name=t.tool_name) for t in agent.enabled_mcp_tools
        ],
        auto_enable_new_mcp_tools=agent.auto_enable_new_mcp_tools,
        mcp_dynamic_tool_loading=agent.mcp_dynamic_tool_loading,
        reasoning_enabled=agent.reasoning_enabled,
        reasoning_effort=agent.reasoning_effort,
        thinking_budget=agent.thinking_budget,
        structured_output_enabled=agent.structured_output_enabled,
        bot_user_id=agent.bot_user_id,
        creator_id=agent.creator_id,
        admin_user_ids=agent.admin_user_ids,
        create_at=agent.create_at,
        update_at=agent.update_at,
        delete_at=agent.delete_at,
        max_file_size=agent.max_file_size,
        last_icon_update=agent.last_icon_update,
    )


def agent_from_message(message: registry_pb2.Agent) -> Agent:
    """The domain agent a client sent (server-assigned fields are overwritten by the registry)."""
    return Agent(
        id=message.id,
        bot_user_id=message.bot_user_id,
        username=message.username.strip(),
        service_id=message.service_id,
        display_name=message.display_name.strip(),
        creator_id=message.creator_id,
        custom_instructions=message.custom_instructions,
        model=message.model.strip(),
        enable_vision=message.enable_vision,
        disable_tools=message.disable_tools,
        channel_access_level=_level(message.channel_access_level),
        channel_ids=tuple(message.channel_ids),
        user_access_level=_level(message.user_access_level),
        user_ids=tuple(message.user_ids),
        team_ids=tuple(message.team_ids),
        admin_user_ids=tuple(message.admin_user_ids),
        enabled_native_tools=tuple(message.enabled_native_tools),
        enabled_mcp_tools=tools_from_messages(message.enabled_mcp_tools),
        auto_enable_new_mcp_tools=message.auto_enable_new_mcp_tools,
        mcp_dynamic_tool_loading=message.mcp_dynamic_tool_loading,
        reasoning_enabled=message.reasoning_enabled,
        reasoning_effort=message.reasoning_effort,
        thinking_budget=message.thinking_budget,
        structured_output_enabled=message.structured_output_enabled,
        max_file_size=message.max_file_size,
    )


def _level(value: int) -> AccessLevel | int:
    try:
        return AccessLevel(value)
    except ValueError:
        # Kept as an int so validation can name the field instead of failing here.
        return value


def tools_from_messages(tools: Iterable[common_pb2.ToolRef]) -> tuple[McpToolRef, ...]:
    """Domain references of MCP tools named in messages."""
    return tuple(McpToolRef(server_origin=t.server_origin, tool_name=t.tool_name) for t in tools)


def tools_to_messages(tools: Iterable[McpToolRef]) -> list[common_pb2.ToolRef]:
    """Messages of MCP tool references."""
    return [common_pb2.ToolRef(server_origin=t.server_origin, tool_name=t.tool_name) for t in tools]


# ---- configuration documents (plugin JSON) ↔ messages ------------------------------------------

PLUGIN_CONFIG_KEYS = {f.json_name for f in registry_pb2.PluginConfig.DESCRIPTOR.fields}


def message_to_json(message: Message) -> dict[str, Any]:
    """The plugin's JSON shape of a message (json_name keys, every field present)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True, use_integers_for_enums=True)


def service_to_message(service: dict[str, Any]) -> registry_pb2.ServiceConfig:
    """The message of a service in the plugin's JSON shape; keys it does not model are skipped."""
    return json_format.ParseDict(service, registry_pb2.ServiceConfig(), ignore_unknown_fields=True)


def config_to_message(config: dict[str, Any]) -> registry_pb2.PluginConfig:
    """Stored documents may carry keys or shapes this API does not model; those are skipped."""
    message = registry_pb2.PluginConfig()
    try:
        json_format.ParseDict(config, message, ignore_unknown_fields=True)
    except json_format.ParseError:
        # One odd legacy value must not make the whole configuration unreadable: parse key by key.
        message = registry_pb2.PluginConfig()
        for key, value in config.items():
            part = registry_pb2.PluginConfig()
            try:
                json_format.ParseDict({key: value}, part, ignore_unknown_fields=True)
            except json_format.ParseError:
                logger.warning("skipping unreadable configuration key %s", key)
                continue
            message.MergeFrom(part)
    return message
