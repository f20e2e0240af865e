"""POST /post/{postid}/react (an emoji the agent picks, added as the caller), /loop_in_agent (run
a thread reply through the mention flow) and /postback_summary (re-post a meeting summary into
the call's thread)."""

from __future__ import annotations

import asyncio
import logging
import re

from agents.llm.v1 import llm_pb2 as llm_pb2
from aiohttp import web

from services.common.errors import DomainError, InvalidInput, PermissionDenied
from services.common.grpc_client import unary
from services.common.mattermost import MattermostClient
from services.gateway.conversations.triggers import loop_in
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, require_empty_body
from services.gateway.routes.guards import bot_for, readable_post, triggers_of

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

_EMOJI = re.compile(r"^[a-z0-9_+-]{1,64}$")
POSTBACK_TYPE = "custom_llm_postback"
# Props linking a meeting summary to what it summarises (set by the meeting routes).
PROP_TRANSCRIPT_POST = "referenced_transcript_post_id"
PROP_RECORDING_FILE = "referenced_recording_file_id"


def emoji_from(answer: str) -> str:
    """The emoji name in the model's answer; InvalidInput when there is none."""
    words = answer.strip().strip("`'\".").split()
    # Exactly one word: a sentence's first word is not a choice.
    name = words[0].strip(":").lower() if len(words) == 1 else ""
    if not _EMOJI.match(name):
        raise InvalidInput("the agent did not choose a valid emoji")
    return name


@routes.post("/post/{postid}/react")
async def react(request: web.Request) -> web.Response:
    """Add, as the caller, the emoji the agent picks for the post."""
    await require_empty_body(request)
    agent = await bot_for(request)
    post = await readable_post(request)
    deps, caller = request.app[DEPS], caller_of(request)
    # The llm holds the instruction (and output limit) of this operation: only the post goes out.
    completion = llm_pb2.CompletionRequest(
        service_id=agent.service_id,
        model=agent.model,
        messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text=post.message)])],
        user_id=caller.user.id,
        agent_username=agent.username,
        operation="emoji_selection",
    )
    answer = await unary(deps.backends.llm.Complete, llm_pb2.CompleteRequest(request=completion))
    emoji = emoji_from(answer.text)
    # Mattermost adds a reaction only as the session's own user, even for admins: the cluster's
    # account issues the caller a short-lived token, reacts with it, and revokes it at once.
    token = await deps.mattermost.create_user_access_token(caller.user.id, "agents-gateway reaction")
    try:
        as_user = MattermostClient(deps.settings.mattermost_url, token.token, session=deps.http)
        await as_user.add_reaction(caller.user.id, post.id, emoji)
    finally:
        try:
            await deps.mattermost.revoke_user_access_token(token.id)
        except DomainError as err:
            logger.warning("revoking a reaction token failed", extra={"error": err.message})
    return web.Response(status=200)


@routes.post("/post/{postid}/loop_in_agent")
async def loop_in_agent(request: web.Request) -> web.Response:
    """Answer the caller's thread reply as if it @mentioned the agent (no synthetic post)."""
    await require_empty_body(request)
    agent = await bot_for(request)
    post = await readable_post(request)
    deps, triggers, caller = request.app[DEPS], triggers_of(request), caller_of(request)
    channel, thread = await asyncio.gather(
        deps.mattermost.get_channel(post.channel_id), deps.mattermost.get_post_thread(post.id)
    )
    trigger = loop_in(post, caller.user.id, deps.directory.by_id(agent.id), channel, thread)
    triggers.spawn(triggers.responder.answer(trigger), "looping in an agent")
    return web.Response(status=200)


@routes.post("/post/{postid}/postback_summary")
async def postback_summary(request: web.Request) -> web.Response:
    """Post a meeting summary (an agent's post in the caller's DM) into the call's thread."""
    await require_empty_body(request)
    summary = await readable_post(request)
    deps, caller = request.app[DEPS], caller_of(request)
    bot = deps.directory.by_bot(summary.user_id)
    source_id = str(summary.props.get(PROP_TRANSCRIPT_POST, ""))
    if bot is None or not source_id:
        raise InvalidInput("the post is not a meeting summary")
    source = await deps.mattermost.get_post(source_id)
    if await deps.mattermost.get_channel_member(source.channel_id, caller.user.id) is None:
        raise PermissionDenied("you cannot post in the meeting's channel")
    root_id = source.root_id or source.id
    # The agent's bot is rarely a member of the call's channel and Mattermost lets only members
    # post: the cluster's account posts it (the plugin posts through the plugin API, which
    # skips that check). from_bot keeps every agent from answering it; bot_user_id says whose.
    props = {"userid": caller.user.id, "from_bot": "true", "bot_user_id": bot.bot_user_id}
    await deps.mattermost.create_post(
        source.channel_id, summary.message, root_id=root_id, props=props, type=POSTBACK_TYPE
    )
    return web.json_response({"rootid": root_id, "channelid": source.channel_id})
