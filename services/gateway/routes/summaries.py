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
from services.gateway.rendering.launch import launch
from services.gateway.rendering.reply import POST_TYPE, ReplyState, base_props
from services.gateway.routes.guards import triggers_of


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
    transcript_upload: TranscriptUpload | None = None


@dataclass(frozen=True)
class TranscriptUpload:
    filename: str
    content: bytes
    mime_type: str


async def summarize_into_dm(request: web.Request, agent: registry_pb2.Agent, summary: SummaryRequest) -> web.Response:
    """Create the bot's reply post in the caller's DM, start the turn (its refusal becomes this
    route's error), and answer ``{postid, channelid}`` while the summary streams in."""
    deps, triggers = request.app[DEPS], triggers_of(request)
    caller = caller_of(request)
    # Everything that can refuse the request is asked before the reply post exists.
    channel = await deps.mattermost.get_channel(summary.channel_id)
    context = llm_pb2.ConversationContext(
        user_id=caller.user.id,
        agent_id=agent.id,
        channel_id=summary.channel_id,
        team_id=channel.team_id,
        user_team_ids=await deps.team_ids_of(caller.user.id),
    )
    poster = await triggers.responder.poster(agent.bot_user_id)
    dm = await poster.get_or_create_direct_channel(caller.user.id, agent.bot_user_id)
    props = base_props(
        conversation_id="",
        responding_to="",
        requester_id=caller.user.id,
        allow_unsafe_links=triggers.directory.allow_unsafe_links,
    )
    props.update(summary.props)
    transcript_file_id, file_ids = summary.transcript_file_id, []
    if summary.transcript_upload is not None:
        upload = summary.transcript_upload
        uploaded = await poster.upload_file(dm.id, upload.filename, upload.content, upload.mime_type)
        transcript_file_id, file_ids = uploaded.id, [uploaded.id]
    reply = await poster.create_post(dm.id, "", props=props, type=POST_TYPE, file_ids=file_ids)
    message = llm_pb2.SummarizeRequest(
        context=context,
        preset_prompt=summary.preset_prompt,
        start_time=summary.start_time,
        end_time=summary.end_time,
        prompt=summary.prompt,
        response_post_id=reply.id,
        transcript_file_id=transcript_file_id,
        transcript_post_id=summary.transcript_post_id,
    )
    events = conversation_events(
        deps.backends.conversations.Summarize, message, timeout=deps.settings.turn_timeout_seconds
    )
    state = ReplyState(post_id=reply.id, requester_id=caller.user.id, props=dict(props))
    await launch(triggers.responder.writer, poster, state, events, new_post=True)
    return web.json_response({"postid": reply.id, "channelid": dm.id})
