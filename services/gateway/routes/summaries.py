"""Starting a channel summary (``Conversations.Summarize``) streamed into a new post in the
caller's DM with the agent's bot: shared by /channel/{id}/interval, /channel/{id}/analyze and the
meeting routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.gateway.backends import conversation_events
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of
from services.gateway.replies import FileUpload


@dataclass(frozen=True)
class SummaryRequest:
    """What to summarise: a channel's posts between two times (ms; end 0 = now), or a transcript."""

    channel_id: str
    preset_prompt: str
    start_time: int = 0
    end_time: int = 0
    prompt: str = ""
    transcript_file_id: str = ""
    transcript_post_id: str = ""
    # Props the reply post carries besides the usual ones (no_regen, referenced_* ...).
    props: dict[str, Any] = field(default_factory=dict)
    # A transcript made here (from a recording): uploaded into the DM, attached to the reply
    # post and summarised from there.
    transcript_upload: FileUpload | None = None
    # /channel/{id}/analyze: the model may read the channel with readers bound to it.
    channel_tools: bool = False


async def summarize_into_dm(request: web.Request, agent: registry_pb2.Agent, summary: SummaryRequest) -> web.Response:
    """Create the bot's reply post in the caller's DM, start the turn (its refusal becomes this
    route's error), and answer ``{postid, channelid}`` while the summary streams in."""
    deps, caller = request.app[DEPS], caller_of(request)
    # Everything that can refuse the request is asked before the reply post exists.
    channel = await deps.mattermost.get_channel(summary.channel_id)
    context = llm_pb2.ConversationContext(
        user_id=caller.user.id,
        agent_id=agent.id,
        channel_id=summary.channel_id,
        team_id=channel.team_id,
        user_team_ids=await deps.team_ids_of(caller.user.id),
    )
    reply = await deps.replies.start_in_dm(
        caller.user.id, agent.bot_user_id, props=summary.props, upload=summary.transcript_upload
    )
    # A transcript made here is summarised from the copy attached to the reply.
    transcript_file_id = reply.file_ids[0] if reply.file_ids else summary.transcript_file_id
    message = llm_pb2.SummarizeRequest(
        context=context,
        preset_prompt=summary.preset_prompt,
        start_time=summary.start_time,
        end_time=summary.end_time,
        prompt=summary.prompt,
        response_post_id=reply.post_id,
        transcript_file_id=transcript_file_id,
        transcript_post_id=summary.transcript_post_id,
        channel_tools=summary.channel_tools,
    )
    events = conversation_events(
        deps.backends.conversations.Summarize, message, timeout=deps.settings.turn_timeout_seconds
    )
    await deps.replies.launch(reply, events)
    return web.json_response({"postid": reply.post_id, "channelid": reply.channel_id})
