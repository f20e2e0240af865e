"""POST /post/{postid}/stop, /regenerate, /tool_call, /tool_result, /answer_question, /analyze:
acting on agent replies and threads; GET /post/{postid}/stream: the reply's tokens live (SSE)."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from aiohttp import web

from services.common.errors import InvalidInput
from services.common.grpc_client import unary
from services.common.licensing import Feature
from services.common.mattermost import Post
from services.gateway.backends import conversation_events
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json, require_empty_body
from services.gateway.rendering.reply import PROP_CONVERSATION_ID
from services.gateway.routes.guards import (
    bot_for,
    readable_post,
    require_agent_post,
    require_license,
    require_requester,
    require_tool_calls_allowed,
)
from services.gateway.routes.live import serve_post_stream

routes = web.RouteTableDef()

ANALYSIS_TYPES = ("summarize_thread", "action_items", "open_questions")


def _context(request: web.Request, channel_id: str = "") -> llm_pb2.ConversationContext:
    caller = caller_of(request)
    return llm_pb2.ConversationContext(user_id=caller.user.id, channel_id=channel_id)


async def _agent_reply(request: web.Request) -> Post:
    post = await readable_post(request)
    require_agent_post(request, post)
    require_requester(request, post)
    return post


@routes.post("/post/{postid}/stop")
async def stop(request: web.Request) -> web.Response:
    """Stop the turn writing the caller's agent reply."""
    await require_empty_body(request)
    post = await _agent_reply(request)
    await unary(request.app[DEPS].backends.conversations.Stop, llm_pb2.StopRequest(post_id=post.id))
    return web.Response(status=200)


@routes.post("/post/{postid}/regenerate")
async def regenerate(request: web.Request) -> web.Response:
    """Rewrite the caller's agent reply with a new turn."""
    await require_empty_body(request)
    post = await _agent_reply(request)
    if str(post.props.get("no_regen", "")).lower() == "true":
        raise InvalidInput("this post cannot be regenerated")
    deps = request.app[DEPS]
    events = conversation_events(
        deps.backends.conversations.Regenerate,
        llm_pb2.RegenerateRequest(post_id=post.id, context=_context(request, post.channel_id)),
        timeout=deps.settings.turn_timeout_seconds,
    )
    await deps.replies.launch(await deps.replies.of_post(post), events)
    return web.Response(status=200)


async def _tool_ids(request: web.Request) -> list[str]:
    body = await read_json(request)
    ids = body.get("accepted_tool_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidInput("accepted_tool_ids must be a list of tool call ids", field="accepted_tool_ids")
    return ids


async def _decide(request: web.Request, *, results: bool) -> web.Response:
    accepted = await _tool_ids(request)
    post = await readable_post(request)
    # No license check, unlike the plugin: an unlicensed install offers only built-in tools (MCP
    # needs a license), the guide's "basic tool integrations", so their approval must work too.
    await require_tool_calls_allowed(request, post)
    require_agent_post(request, post)
    require_requester(request, post)
    if not post.props.get(PROP_CONVERSATION_ID):
        raise InvalidInput("the post has no conversation")
    deps = request.app[DEPS]
    context = _context(request, post.channel_id)
    conversations, timeout = deps.backends.conversations, deps.settings.turn_timeout_seconds
    if results:
        share = llm_pb2.ToolResultShareRequest(post_id=post.id, accepted_tool_ids=accepted, context=context)
        events = conversation_events(conversations.ToolResultShare, share, timeout=timeout)
    else:
        decision = llm_pb2.ToolDecisionRequest(post_id=post.id, accepted_tool_ids=accepted, context=context)
        events = conversation_events(conversations.ToolDecision, decision, timeout=timeout)
    await deps.replies.launch(await deps.replies.of_post(post), events)
    return web.Response(status=200)


@routes.post("/post/{postid}/tool_call")
async def tool_call(request: web.Request) -> web.Response:
    """Accept (``accepted_tool_ids``) or reject the paused turn's pending tool calls, then resume it."""
    return await _decide(request, results=False)


@routes.post("/post/{postid}/tool_result")
async def tool_result(request: web.Request) -> web.Response:
    """Share the chosen tool results (``accepted_tool_ids``) into the channel, then run the follow-up round."""
    return await _decide(request, results=True)


@routes.post("/post/{postid}/answer_question")
async def answer_question(request: web.Request) -> web.Response:
    """Answer the question the caller's paused agent reply asks (AskUserQuestion) with one of its
    options (``answer``; ``tool_call_id`` optional), then resume the turn."""
    body = await read_json(request)
    answer = body.get("answer") if isinstance(body, dict) else None
    if not isinstance(answer, str) or not answer.strip():
        raise InvalidInput("answer must be one of the question's options", field="answer")
    call_id = body.get("tool_call_id", "")
    if not isinstance(call_id, str):
        raise InvalidInput("tool_call_id must be a string", field="tool_call_id")
    post = await _agent_reply(request)
    if not post.props.get(PROP_CONVERSATION_ID):
        raise InvalidInput("the post has no conversation")
    deps = request.app[DEPS]
    message = llm_pb2.AnswerQuestionRequest(
        post_id=post.id, tool_call_id=call_id, answer=answer, context=_context(request, post.channel_id)
    )
    events = conversation_events(
        deps.backends.conversations.AnswerQuestion, message, timeout=deps.settings.turn_timeout_seconds
    )
    await deps.replies.launch(await deps.replies.of_post(post), events)
    return web.Response(status=200)


@routes.post("/post/{postid}/analyze")
async def analyze(request: web.Request) -> web.Response:
    """Analyse the post's thread (summary, action items or open questions) into a DM with the agent."""
    body = await read_json(request)
    analysis_type = body.get("analysis_type") if isinstance(body, dict) else None
    if analysis_type not in ANALYSIS_TYPES:
        raise InvalidInput(f"analysis_type must be one of {', '.join(ANALYSIS_TYPES)}", field="analysis_type")
    post = await readable_post(request)
    agent = await bot_for(request)
    await require_license(request, Feature.AI_ACTIONS)
    deps, caller = request.app[DEPS], caller_of(request)
    context = llm_pb2.ConversationContext(
        user_id=caller.user.id,
        agent_id=agent.id,
        channel_id=post.channel_id,
        is_direct_message=True,
        user_team_ids=await deps.team_ids_of(caller.user.id),
    )
    reply = await deps.replies.start_in_dm(
        caller.user.id,
        agent.bot_user_id,
        props={"referenced_thread": post.root_id or post.id, "prompt_type": analysis_type},
    )
    request_message = llm_pb2.AnalyzeRequest(
        context=context, post_id=post.id, analysis_type=analysis_type, response_post_id=reply.post_id
    )
    events = conversation_events(
        deps.backends.conversations.Analyze, request_message, timeout=deps.settings.turn_timeout_seconds
    )
    await deps.replies.launch(reply, events)
    return web.json_response({"postid": reply.post_id, "channelid": reply.channel_id})


@routes.get("/post/{postid}/stream")
async def post_stream(request: web.Request) -> web.StreamResponse:
    """The reply's ``postupdate`` payloads live as SSE, for a caller who can read the post."""
    post = await readable_post(request)
    return await serve_post_stream(request, post)
