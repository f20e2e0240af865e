"""Conversions between registry domain objects and agents.registry.v1 messages."""

from __future__ import annotations

from agents.common.v1 import common_pb2 as common_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2

from services.index.registry.agents import Agent


def agent_to_message(agent: Agent, *, include_instructions: bool = True) -> registry_pb2.Agent:
    return registry_pb2.Agent(
        id=agent.id,
        username=agent.username,
        display_name=agent.display_name,
        custom_instructions=agent.custom_instructions if include_instructions else "",
        service_id=agent.service_id,
        model=agent.model,
        enable_vision=agent.enable_vision,
        disable_tools=agent.disable_tools,
        channel_access_level=int(agent.channel_access_level),
        channel_ids=agent.channel_ids,
        user_access_level=int(agent.user_access_level),
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
