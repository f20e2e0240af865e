"""Semantic search routes (plugin-api.md 1.2, 1.3): ``/search``, ``/search/run``, ``/search/raw``
and the admin reindex routes, each a call to ``agents.index.v1.Index``.

The index decides whether search is configured and licensed (FAILED_PRECONDITION) and validates
queries; until semantic search lands its RPCs answer UNIMPLEMENTED, which the error table renders
as 501 like any other status.
"""

from __future__ import annotations

from agents.index.v1 import index_pb2 as index_pb2
from aiohttp import web

from services.common.errors import InvalidInput, Unimplemented
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json, require_empty_body
from services.gateway.proto_json import from_json, to_json
from services.gateway.routes.guards import bot_for, require_admin

routes = web.RouteTableDef()


async def _search(request: web.Request, search: index_pb2.SearchRequest) -> index_pb2.SearchResponse:
    """Index.Search over the channels the caller can read (the index filters by them)."""
    deps = request.app[DEPS]
    channels = await deps.mattermost.get_all_channels_for_user(caller_of(request).user.id)
    search.ClearField("readable_channel_ids")  # the caller's memberships, never ids from the body
    search.readable_channel_ids.extend(c.id for c in channels)
    return await unary(deps.backends.index.Search, search)


@routes.post("/search")
@routes.post("/search/run")
async def search_with_answer(request: web.Request) -> web.Response:
    """``aiBotRequired``, then the plugin's SearchRequest (``query``, ``teamId``, ``channelId``,
    ``maxResults``)."""
    await bot_for(request)
    body = await read_json(request)
    search = from_json(body, index_pb2.SearchRequest(), "search request")
    max_results = body.get("maxResults", 0)
    if not isinstance(max_results, int) or isinstance(max_results, bool):
        raise InvalidInput("maxResults must be an integer", field="maxResults")
    search.limit = max_results
    await _search(request, search)
    # The answer over the results (and, for /search/run, the bot's DM reply) lands with semantic search.
    raise Unimplemented("answers to searches are not available yet")


@routes.post("/search/raw")
async def raw_search(request: web.Request) -> web.Response:
    """The index's results for a search, without an answer."""
    search = from_json(await read_json(request), index_pb2.SearchRequest(), "search request")
    reply = await _search(request, search)
    return web.json_response({"results": [to_json(r, proto_names=True) for r in reply.results]})


def _job(job: index_pb2.JobStatus) -> web.Response:
    return web.json_response(to_json(job, proto_names=True))


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
    return web.json_response(to_json(reply, proto_names=True))
