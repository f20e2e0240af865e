"""GET /ai_bots: the agents the caller may use."""

from __future__ import annotations

import asyncio

from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of

routes = web.RouteTableDef()


@routes.get("/ai_bots")
async def ai_bots(request: web.Request) -> web.Response:
    """The agents the caller may use (in ``channel_id`` when given) as the plugin's bot list, with
    the DM channel each already has with the caller."""
    deps = request.app[DEPS]
    caller = caller_of(request)
    team_ids = await deps.team_ids_of(caller.user.id)
    query = registry_pb2.ListUsableAgentsRequest(channel_id=request.query.get("channel_id", ""), user_team_ids=team_ids)
    # Independent reads: the DM lookup (Mattermost) overlaps the registry call instead of adding to it.
    response, dms = await asyncio.gather(
        unary(deps.backends.registry.ListUsableAgents, query),
        deps.direct_channels.partners_of(caller.user.id),
    )
    bots = [
        {
            "id": agent.bot_user_id,
            "displayName": agent.display_name,
            "username": agent.username,
            "lastIconUpdate": agent.last_icon_update,
            # The existing DM's id, "" until one exists: listing never creates a channel.
            "dmChannelID": dms.get(agent.bot_user_id, ""),
            "channelAccessLevel": agent.channel_access_level,
            "channelIDs": list(agent.channel_ids),
            "userAccessLevel": agent.user_access_level,
            "userIDs": list(agent.user_ids),
            "enabledMCPTools": [
                {"server_origin": t.server_origin, "tool_name": t.tool_name} for t in agent.enabled_mcp_tools
            ],
            "autoEnableNewMCPTools": agent.auto_enable_new_mcp_tools,
        }
        for agent in response.agents
    ]
    return web.json_response(
        {"bots": bots, "searchEnabled": response.search_enabled, "allowUnsafeLinks": response.allow_unsafe_links}
    )
