"""GET /ai_threads (the caller's recent conversations), GET /conversations/{id} (one, with turns)
and GET /conversations/{id}/context (the token composition of its next request)."""

from __future__ import annotations

from typing import Any

from agents.common.v1 import common_pb2 as common_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from aiohttp import web
from google.protobuf import json_format

from services.common.errors import PermissionDenied
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of
from services.gateway.routes.guards import require_channel_read

routes = web.RouteTableDef()

# The plugin lists the caller's last 60 conversations.
THREADS_LIMIT = 60


@routes.get("/ai_threads")
async def ai_threads(request: web.Request) -> web.Response:
    """The caller's last 60 conversations, newest first."""
    deps = request.app[DEPS]
    response = await unary(
        deps.backends.conversations.ListConversations,
        llm_pb2.ListConversationsRequest(page=common_pb2.PageRequest(page_size=THREADS_LIMIT)),
    )
    threads = [
        {
            "id": c.id,
            "title": c.title,
            "channel_id": c.channel_id or None,
            "bot_id": c.bot_id,
            "root_post_id": c.root_post_id or None,
            "turn_count": c.turn_count,
            "update_at": c.updated_at,
        }
        for c in response.conversations
    ]
    return web.json_response(threads)


def _turn(turn: llm_pb2.Turn) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": turn.id,
        "post_id": turn.post_id or None,
        "role": turn.role,
        "content": [json_format.MessageToDict(block) for block in turn.content],
        "tokens_in": turn.tokens_in,
        "tokens_out": turn.tokens_out,
        "sequence": turn.sequence,
    }
    if turn.approval_state:
        out["approval_state"] = turn.approval_state
    return out


@routes.get("/conversations/{conversationid}")
async def get_conversation(request: web.Request) -> web.Response:
    """One conversation with its turns: the caller's own, or one in a channel the caller reads."""
    deps = request.app[DEPS]
    response = await unary(
        deps.backends.conversations.GetConversation,
        llm_pb2.GetConversationRequest(id=request.match_info["conversationid"]),
    )
    c = response.conversation
    # Someone else's conversation is visible only with read access to its channel (the llm
    # service strips unshared tool content for non-owners).
    if c.user_id != caller_of(request).user.id:
        if not c.channel_id:
            raise PermissionDenied("this conversation belongs to another user")
        await require_channel_read(request, c.channel_id)
    return web.json_response(
        {
            "id": c.id,
            "user_id": c.user_id,
            "bot_id": c.bot_id,
            "channel_id": c.channel_id or None,
            "root_post_id": c.root_post_id or None,
            "title": c.title,
            "operation": c.operation,
            "turns": [_turn(t) for t in c.turns],
        }
    )


@routes.get("/conversations/{conversationid}/context")
async def conversation_context(request: web.Request) -> web.Response:
    """How the tokens of the conversation's next request divide between the system prompt, the
    history, tool definitions, tool results and images; readable as the conversation is."""
    deps = request.app[DEPS]
    found = await unary(
        deps.backends.conversations.GetConversationContext,
        llm_pb2.GetConversationContextRequest(id=request.match_info["conversationid"]),
    )
    body: dict[str, Any] = {
        "components": [{"source": c.source, "proportion": c.proportion, "tokens": c.tokens} for c in found.components],
        "total": found.total,
        "total_source": found.total_source,
        "model": found.model,
    }
    if found.input_token_limit:
        body["input_token_limit"] = found.input_token_limit
    return web.json_response(body)
