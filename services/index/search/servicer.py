"""agents.index.v1.Index: thin translation between messages and the semantic index."""

from __future__ import annotations

import time

import grpc
from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc

from services.common.errors import PermissionDenied
from services.common.identity import identity
from services.common.telemetry import tracer
from services.index.reindex.health import check_health
from services.index.reindex.runner import Reindexer
from services.index.reindex.store import Job
from services.index.search.metrics import FAILED, SearchMetrics
from services.index.search.semantic import PostDoc, SearchQuery, SemanticIndex
from services.index.search.store import Hit


def _post(p: index_pb2.Post) -> PostDoc:
    return PostDoc(p.id, p.team_id, p.channel_id, p.user_id, p.message, p.create_at, p.type, p.from_bot)


def _result(h: Hit) -> index_pb2.SearchResult:
    return index_pb2.SearchResult(
        post_id=h.post_id,
        channel_id=h.channel_id,
        team_id=h.team_id,
        user_id=h.user_id,
        content=h.content,
        score=h.score,
        is_chunk=h.total_chunks > 1,
        chunk_index=h.chunk_index,
        total_chunks=h.total_chunks,
        create_at=h.create_at,
    )


def _job(job: Job) -> index_pb2.JobStatus:
    elapsed = max(job.last_updated_at - job.started_at, 1)
    rate = job.processed_rows * 1000 / elapsed if job.processed_rows else 0.0
    left = max(job.total_rows - job.processed_rows, 0)
    return index_pb2.JobStatus(
        job_id=job.id,
        status=job.status,
        error=job.error,
        started_at=job.started_at,
        completed_at=job.completed_at,
        processed_rows=job.processed_rows,
        total_rows=job.total_rows,
        resumable=job.status == "failed" or job.is_stale,
        error_count=job.error_count,
        node_id=job.node_id,
        cutoff_at=job.cutoff_at,
        last_updated_at=job.last_updated_at,
        is_stale=job.is_stale,
        posts_per_second=rate,
        eta_ms=int(left * 1000 / rate) if rate and job.status == "running" else 0,
    )


class IndexServicer(index_pb2_grpc.IndexServicer):
    """Every RPC of agents.index.v1.Index."""

    def __init__(self, index: SemanticIndex, reindexer: Reindexer, metrics: SearchMetrics) -> None:
        self.index = index
        self.reindexer = reindexer
        self.metrics = metrics

    async def IndexPosts(
        self,
        request: index_pb2.IndexPostsRequest,
        context: grpc.aio.ServicerContext[index_pb2.IndexPostsRequest, index_pb2.IndexPostsResponse],
    ) -> index_pb2.IndexPostsResponse:
        """Embed and store the posts, replacing their earlier rows."""
        indexed, chunks = await self.index.index_posts([_post(p) for p in request.posts])
        return index_pb2.IndexPostsResponse(indexed=indexed, chunks=chunks)

    async def DeletePosts(
        self,
        request: index_pb2.DeletePostsRequest,
        context: grpc.aio.ServicerContext[index_pb2.DeletePostsRequest, index_pb2.DeletePostsResponse],
    ) -> index_pb2.DeletePostsResponse:
        """Remove the posts' rows."""
        return index_pb2.DeletePostsResponse(deleted=await self.index.delete_posts(list(request.post_ids)))

    async def Search(
        self,
        request: index_pb2.SearchRequest,
        context: grpc.aio.ServicerContext[index_pb2.SearchRequest, index_pb2.SearchResponse],
    ) -> index_pb2.SearchResponse:
        """The best matches among the channels the caller can read."""
        caller = identity()
        if request.user_id and caller.user_id not in ("", request.user_id) and not caller.is_system_admin:
            # A call on a user's behalf searches their channels, never another user's.
            raise PermissionDenied("user_id must be the calling user's own")
        started, scans = time.monotonic(), FAILED
        with tracer(__name__).start_as_current_span("semantic search") as span:
            try:
                found = await self.index.search(
                    SearchQuery(
                        query=request.query,
                        user_id=request.user_id,
                        team_id=request.team_id,
                        channel_id=request.channel_id,
                        limit=request.limit,
                        offset=request.offset,
                        min_score=request.min_score,
                    )
                )
                scans = found.scans
            finally:
                self.metrics.observe(scans, time.monotonic() - started)
            span.set_attribute("search.results", len(found.hits))
            span.set_attribute("search.scans", scans)
            span.set_attribute("search.readable_channels", found.channels)
        return index_pb2.SearchResponse(results=[_result(h) for h in found.hits])

    async def Reindex(
        self,
        request: index_pb2.ReindexRequest,
        context: grpc.aio.ServicerContext[index_pb2.ReindexRequest, index_pb2.ReindexResponse],
    ) -> index_pb2.ReindexResponse:
        """Start a reindex job (or resume the failed one without clear_index)."""
        return index_pb2.ReindexResponse(job=_job(await self.reindexer.start(clear=request.clear_index)))

    async def ReindexStatus(
        self,
        request: index_pb2.ReindexStatusRequest,
        context: grpc.aio.ServicerContext[index_pb2.ReindexStatusRequest, index_pb2.ReindexStatusResponse],
    ) -> index_pb2.ReindexStatusResponse:
        """The latest job."""
        return index_pb2.ReindexStatusResponse(job=_job(await self.reindexer.status()))

    async def CancelReindex(
        self,
        request: index_pb2.CancelReindexRequest,
        context: grpc.aio.ServicerContext[index_pb2.CancelReindexRequest, index_pb2.CancelReindexResponse],
    ) -> index_pb2.CancelReindexResponse:
        """Ask the running job to stop."""
        return index_pb2.CancelReindexResponse(job=_job(await self.reindexer.cancel()))

    async def Catchup(
        self,
        request: index_pb2.CatchupRequest,
        context: grpc.aio.ServicerContext[index_pb2.CatchupRequest, index_pb2.CatchupResponse],
    ) -> index_pb2.CatchupResponse:
        """Index the posts created since the last completed job started."""
        return index_pb2.CatchupResponse(job=_job(await self.reindexer.catch_up()))

    async def HealthCheck(
        self,
        request: index_pb2.HealthCheckRequest,
        context: grpc.aio.ServicerContext[index_pb2.HealthCheckRequest, index_pb2.HealthCheckResponse],
    ) -> index_pb2.HealthCheckResponse:
        """How the index compares with Mattermost's posts, and whether the model still matches."""
        health = await check_health(self.index, self.reindexer.mattermost)
        return index_pb2.HealthCheckResponse(
            db_post_count=health.db_post_count,
            indexed_post_count=health.indexed_post_count,
            missing_posts=health.missing_posts,
            status=health.status,
            checked_at=health.checked_at,
            error=health.error,
            model_compatible=health.model_compatible,
            model_needs_reindex=health.model_needs_reindex,
            model_compat_reason=health.model_compat_reason,
        )
