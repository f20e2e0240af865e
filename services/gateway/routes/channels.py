"""POST /channel/{channelid}/interval: a channel summary over a time range, streamed into a DM."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from aiohttp import web

from services.common.errors import InvalidInput
from services.gateway.backends import conversation_events
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json
from services.gateway.rendering.launch import launch
from services.gateway.rendering.reply import POST_TYPE, ReplyState, base_props
from services.gateway.routes.guards import bot_for, require_channel_read, triggers_of

routes = web.RouteTableDef()

PRESETS = ("summarize_unreads", "summarize_range", "action_items", "open_questions")
MAX_RANGE_MS = 14 * 24 * 3600 * 1000


def _int(body: dict[str, object], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{key} must be a non-negative integer (milliseconds)", field=key)
    return value


@routes.post("/channel/{channelid}/interval")
async def interval(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    preset = body.get("preset_prompt")
    if preset not in PRESETS:
        raise InvalidInput(f"preset_prompt must be one of {', '.join(PRESETS)}", field="preset_prompt")
    start, end = _int(body, "start_time"), _int(body, "end_time")
    if end and end < start:
        raise InvalidInput("end_time is before start_time", field="end_time")
    if end and end - start > MAX_RANGE_MS:
        raise InvalidInput("the range is over 14 days", field="start_time")
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise InvalidInput("prompt must be a string", field="prompt")
    channel_id = request.match_info["channelid"]
    await require_channel_read(request, channel_id)
    agent = await bot_for(request)
    deps, triggers = request.app[DEPS], triggers_of(request)
    caller = caller_of(request)
    poster = await triggers.responder.poster(agent.bot_user_id)
    dm = await poster.get_or_create_direct_channel(caller.user.id, agent.bot_user_id)
    props = base_props(
        conversation_id="",
        responding_to="",
        requester_id=caller.user.id,
        allow_unsafe_links=triggers.directory.allow_unsafe_links,
    )
    # Summaries over a fixed range cannot be regenerated (the plugin's no_regen).
    props["no_regen"] = "true"
    reply = await poster.create_post(dm.id, "", props=props, type=POST_TYPE)
    channel = await deps.mattermost.get_channel(channel_id)
    context = llm_pb2.ConversationContext(
        user_id=caller.user.id,
        agent_id=agent.id,
        channel_id=channel_id,
        team_id=channel.team_id,
        user_team_ids=await deps.team_ids_of(caller.user.id),
    )
    message = llm_pb2.SummarizeRequest(
        context=context,
        preset_prompt=preset,
        start_time=start,
        end_time=end,
        prompt=prompt,
        response_post_id=reply.id,
    )
    events = conversation_events(
        deps.backends.conversations.Summarize, message, timeout=deps.settings.turn_timeout_seconds
    )
    state = ReplyState(post_id=reply.id, requester_id=caller.user.id, props=dict(props))
    await launch(triggers.responder.writer, poster, state, events)
    return web.json_response({"postid": reply.id, "channelid": dm.id})
