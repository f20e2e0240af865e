"""Semantic search routes (plugin-api.md 1.2, 1.3): ``/search``, ``/search/run``, ``/search/raw``
and the admin reindex routes, each a call to ``agents.index.v1.Index``.

The index decides whether search is configured and licensed (FAILED_PRECONDITION), validates
queries and asks Mattermost for the caller's channels at every search (so a removal takes effect
at once) while it embeds the query; the gateway names the caller and adds the names shown with
the results.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from agents.index.v1 import index_pb2 as index_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.errors import DomainError, FailedPrecondition, InvalidInput, UpstreamUnavailable
from services.common.grpc_client import unary
from services.common.mattermost import MattermostClient, User
from services.gateway.backends import completion_events
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json, require_empty_body
from services.gateway.proto_json import from_json
from services.gateway.replies import Events, Question
from services.gateway.request_input import check_optional_mattermost_id
from services.gateway.routes.guards import bot_for, require_admin

routes = web.RouteTableDef()


async def _search(request: web.Request, search: index_pb2.SearchRequest) -> index_pb2.SearchResponse:
    """Index.Search as the caller: the index looks up the channels they can read."""
    search.user_id = caller_of(request).user.id  # the caller's channels, never a user id from the body
    return await unary(request.app[DEPS].backends.index.Search, search)


async def _channel_name(mattermost: MattermostClient, channel_id: str) -> str:
    try:
        channel = await mattermost.get_channel(channel_id)
    except DomainError:
        return "Unknown Channel"
    return {"D": "Direct Message", "G": "Group Message"}.get(channel.type, channel.display_name)


async def _team_name(mattermost: MattermostClient, team_id: str) -> str:
    try:
        return (await mattermost.get_team(team_id)).display_name
    except DomainError:
        return ""


async def _users(mattermost: MattermostClient, user_ids: list[str]) -> list[User]:
    return await mattermost.get_users_by_ids(user_ids) if user_ids else []


@dataclass(frozen=True)
class _Names:
    """Channel display names (the plugin's "Direct Message"/"Group Message" for those), team
    display names and usernames of a search's results."""

    channels: dict[str, str]
    teams: dict[str, str]
    users: dict[str, str]

    def user(self, user_id: str) -> str:
        return self.users.get(user_id, "Unknown User")


async def _names(mattermost: MattermostClient, results: list[index_pb2.SearchResult]) -> _Names:
    """The names shown with ``results``, each asked of Mattermost once."""
    channel_ids = sorted({r.channel_id for r in results})
    team_ids = sorted({r.team_id for r in results if r.team_id})
    user_ids = sorted({r.user_id for r in results})
    channels, teams, users = await asyncio.gather(
        asyncio.gather(*(_channel_name(mattermost, c) for c in channel_ids)),
        asyncio.gather(*(_team_name(mattermost, t) for t in team_ids)),
        _users(mattermost, user_ids),
    )
    return _Names(
        dict(zip(channel_ids, channels, strict=True)),
        dict(zip(team_ids, teams, strict=True)),
        {u.id: u.username for u in users},
    )


NO_RESULTS = "I couldn't find any relevant messages for your query. Please try a different search term."
SEARCH_DEFAULT_RESULTS = 5


def _rag_results(results: list[index_pb2.SearchResult], names: _Names) -> list[dict[str, Any]]:
    """The plugin's RAGResult list: 1-based index for citations, chunk position in the channel name."""
    rag = []
    for number, r in enumerate(results, start=1):
        chunk = f" (Chunk {r.chunk_index + 1} of {r.total_chunks})" if r.is_chunk else ""
        rag.append(
            {
                "index": number,
                "postId": r.post_id,
                "channelId": r.channel_id,
                "channelName": names.channels[r.channel_id] + chunk,
                "teamName": names.teams.get(r.team_id, ""),
                "userId": r.user_id,
                "username": names.user(r.user_id),
                "content": r.content,
                "score": r.score,
                "createAt": r.create_at,
            }
        )
    return rag


def _context(query: str, rag: list[dict[str, Any]]) -> str:
    """The results and the question, as the plugin's search_results template lays them out."""
    messages = "".join(
        f'<message from="{r["username"]}" in="{r["channelName"]}" relevance="{r["score"]:.2f}">\n'
        f"{r['content']}\n</message>\n\n"
        for r in rag
    )
    return f"<context>\n{messages}</context>\n\n{query}"


def _completion(
    request: web.Request, agent: registry_pb2.Agent, query: str, rag: list[dict[str, Any]]
) -> llm_pb2.CompletionRequest:
    """The agent's completion answering ``query`` over the search results ``rag``."""
    return llm_pb2.CompletionRequest(
        service_id=agent.service_id,
        model=agent.model,
        messages=[llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text=_context(query, rag))])],
        user_id=caller_of(request).user.id,
        agent_username=agent.username,
        operation="search",
    )


async def _searched(request: web.Request) -> tuple[registry_pb2.Agent, str, list[dict[str, Any]]]:
    """``aiBotRequired``, then the plugin's SearchRequest run: the agent, the query and the
    results (permitted channels only) as the plugin's RAGResults."""
    agent = await bot_for(request)
    query, search = await _search_request(request)
    reply = await _search(request, search)
    rag = _rag_results(list(reply.results), await _names(request.app[DEPS].mattermost, list(reply.results)))
    return agent, query, rag


@routes.post("/search")
async def search_with_answer(request: web.Request) -> web.Response:
    """The results and the agent's answer over them (not streamed)."""
    agent, query, rag = await _searched(request)
    if not rag:
        return web.json_response({"answer": NO_RESULTS, "results": []})
    complete = llm_pb2.CompleteRequest(request=_completion(request, agent, query, rag))
    answer = await unary(request.app[DEPS].backends.llm.Complete, complete)
    return web.json_response({"answer": answer.text, "results": rag})


async def _canned(post_id: str, text: str) -> Events:
    """A finished turn that only says ``text``."""
    for event in (
        llm_pb2.StreamEvent(text_delta=llm_pb2.TextDelta(text=text)),
        llm_pb2.StreamEvent(done=llm_pb2.Done(stop_reason=llm_pb2.STOP_REASON_END_TURN)),
    ):
        yield llm_pb2.ConversationEvent(post_id=post_id, stream=event)


@routes.post("/search/run")
async def run_search(request: web.Request) -> web.Response:
    """The plugin's flow: the question goes into the caller's DM with the agent's bot, and the
    answer over the results streams into a reply in its thread (``search_results`` carries
    them, no_regen). Answers ``{postId, channelId}`` of the question post."""
    agent, query, rag = await _searched(request)
    deps = request.app[DEPS]
    props: dict[str, Any] = {"no_regen": "true"}
    if rag:
        props["search_results"] = json.dumps(rag)
    reply = await deps.replies.start_in_dm(
        caller_of(request).user.id,
        agent.bot_user_id,
        props=props,
        question=Question(query, {"search_query": "true"}),
    )
    if rag:
        answer = llm_pb2.StreamCompleteRequest(request=_completion(request, agent, query, rag))
        events = completion_events(
            deps.backends.llm.StreamComplete, answer, reply.post_id, timeout=deps.settings.turn_timeout_seconds
        )
    else:
        events = _canned(reply.post_id, NO_RESULTS)
    await deps.replies.launch(reply, events)
    # The names the plugin's webapp reads (the plugin itself answers PostID and ChannelID).
    return web.json_response({"postId": reply.question_id, "channelId": reply.channel_id})


async def _search_request(request: web.Request) -> tuple[str, index_pb2.SearchRequest]:
    """The plugin's SearchRequest as Index.Search asks it (maxResults defaults to 5, at most 100)."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("the search request must be a JSON object")
    query, max_results = body.get("query"), body.get("maxResults", 0) or SEARCH_DEFAULT_RESULTS
    if not isinstance(query, str):
        raise InvalidInput("query must be a string", field="query")
    if not isinstance(max_results, int) or isinstance(max_results, bool) or not 0 < max_results <= 100:
        raise InvalidInput("maxResults must be an integer between 1 and 100", field="maxResults")
    for name in ("teamId", "channelId"):
        if not isinstance(body.get(name, ""), str):
            raise InvalidInput(f"{name} must be a string", field=name)
    search = index_pb2.SearchRequest(
        query=query, team_id=body.get("teamId", ""), channel_id=body.get("channelId", ""), limit=max_results
    )
    _check_scope(search, "teamId", "channelId")
    return query, search


def _check_scope(search: index_pb2.SearchRequest, team_field: str, channel_field: str) -> None:
    """The team and channel a search is limited to ("" for none) must be Mattermost ids."""
    check_optional_mattermost_id(search.team_id, team_field)
    check_optional_mattermost_id(search.channel_id, channel_field)


RAW_MAX_LIMIT = 50


@routes.post("/search/raw")
async def raw_search(request: web.Request) -> web.Response:
    """The index's results for a search, with channel and user names, without an answer."""
    search = from_json(await read_json(request), index_pb2.SearchRequest(), "search request")
    if search.limit > RAW_MAX_LIMIT:
        raise InvalidInput(f"limit must be at most {RAW_MAX_LIMIT}", field="limit")
    _check_scope(search, "team_id", "channel_id")
    try:
        reply = await _search(request, search)
    except FailedPrecondition as exc:
        # The plugin answers 503 on this route while search is off or needs a reindex.
        raise UpstreamUnavailable(exc.message) from None
    names = await _names(request.app[DEPS].mattermost, list(reply.results))
    results = [
        {
            "post_id": r.post_id,
            "channel_id": r.channel_id,
            "channel_name": names.channels[r.channel_id],
            "user_id": r.user_id,
            "username": names.user(r.user_id),
            "content": r.content,
            "score": r.score,
            "create_at": r.create_at,
        }
        for r in reply.results
    ]
    return web.json_response({"results": results})


def _time(ms: int) -> str:
    """RFC 3339, as the plugin's Go ``time.Time`` fields render (its zero time for 0)."""
    if not ms:
        return "0001-01-01T00:00:00Z"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _job(job: index_pb2.JobStatus) -> web.Response:
    """The plugin's JobStatus, with this cluster's rate and ETA beside it."""
    return web.json_response(
        {
            "job_id": job.job_id,
            "status": job.status,
            "error": job.error,
            "started_at": _time(job.started_at),
            "completed_at": _time(job.completed_at),
            "processed_rows": job.processed_rows,
            "total_rows": job.total_rows,
            "resumable": job.resumable,
            "error_count": job.error_count,
            "node_id": job.node_id,
            "cutoff_at": job.cutoff_at,
            "last_updated_at": _time(job.last_updated_at),
            "is_stale": job.is_stale,
            "posts_per_second": job.posts_per_second,
            "eta_ms": job.eta_ms,
        }
    )


@routes.post("/admin/reindex")
async def reindex(request: web.Request) -> web.Response:
    """Start a reindex job (``clearIndex`` false resumes a failed one), for admins."""
    require_admin(request)
    body = await read_json(request) if request.can_read_body else {}
    job = from_json(body, index_pb2.ReindexRequest(), "reindex request")
    # The plugin's clearIndex defaults to true: an absent (or null) field is a full reindex.
    job.clear_index = body.get("clearIndex") is not False
    reply = await unary(request.app[DEPS].backends.index.Reindex, job)
    return _job(reply.job)


@routes.get("/admin/reindex/status")
async def reindex_status(request: web.Request) -> web.Response:
    """The latest reindex job, for admins."""
    require_admin(request)
    reply = await unary(request.app[DEPS].backends.index.ReindexStatus, index_pb2.ReindexStatusRequest())
    return _job(reply.job)


@routes.post("/admin/reindex/cancel")
async def cancel_reindex(request: web.Request) -> web.Response:
    """Ask the running reindex job to stop, for admins."""
    require_admin(request)
    await require_empty_body(request)
    reply = await unary(request.app[DEPS].backends.index.CancelReindex, index_pb2.CancelReindexRequest())
    return _job(reply.job)


@routes.post("/admin/reindex/catchup")
async def catch_up(request: web.Request) -> web.Response:
    """Index the posts newer than the last indexed one, for admins."""
    require_admin(request)
    await require_empty_body(request)
    reply = await unary(request.app[DEPS].backends.index.Catchup, index_pb2.CatchupRequest())
    return _job(reply.job)


@routes.get("/admin/reindex/health-check")
async def index_health(request: web.Request) -> web.Response:
    """How the indexed posts compare with Mattermost's, for admins."""
    require_admin(request)
    reply = await unary(request.app[DEPS].backends.index.HealthCheck, index_pb2.HealthCheckRequest())
    return web.json_response(
        {
            "db_post_count": reply.db_post_count,
            "indexed_post_count": reply.indexed_post_count,
            "missing_posts": reply.missing_posts,
            "status": reply.status,
            "checked_at": _time(reply.checked_at),
            "error": reply.error,
            "model_compatible": reply.model_compatible,
            "model_needs_reindex": reply.model_needs_reindex,
            "model_compat_reason": reply.model_compat_reason,
        }
    )
