"""Reindex jobs: every channel's posts (DMs and group messages too), read from Mattermost in
keyset pages and stored in the order they were read, each page committed with the cursor past it.
Reading, embedding and storing overlap: pages are read and embedded ahead of the one committed.

A job's channels are split into partitions (a hash of the channel id), each read by the worker
holding its lease (renewed with every page), from its own cursor: with one worker (the default)
in the index process, with ``workers`` above 1 in that many child processes
(``services.index.reindex.worker``, what a Kubernetes Job runs). A second start while the job is
live is refused; a worker that dies (kill -9) stops renewing, and another worker or any index
replica takes its partition over within a lease and resumes it from its cursor. With the
``kubernetes`` backend the workers are the pods of one Kubernetes Job per run instead: the index
renews the job's lease while that Job runs (and never takes its partitions over), fails the job
(resumable) when the Job failed or vanished with partitions left, and deletes it on cancel.

A page that cannot be embedded (provider outage) is retried with backoff, then the job fails with its cursors
kept and is resumed by a start with ``clear_index`` false. Pages are replaced by post id, so a
page stored twice (a crash between storing it and a resume) leaves no duplicate rows. The worker
that finishes the last partition completes the job; if it dies first, whoever next sees every
partition done with no live worker left (a status read, the watch for orphans) completes it.

Channels are taken in id order and each channel's posts newest first (``before`` the oldest post
of the previous page), so posts created or deleted during the job never shift a page.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from services.common.errors import DomainError, NotFound, QuotaExceeded, UpstreamUnavailable
from services.common.mattermost import Channel, MattermostClient, Post
from services.index.reindex.metrics import ReindexGauges
from services.index.reindex.store import ACTIVE, Job, JobStore, Partition, Superseded
from services.index.search.semantic import PostDoc, SearchSetup, SemanticIndex
from services.index.search.store import Chunk

if TYPE_CHECKING:
    from services.index.reindex.kubernetes_jobs import KubernetesJobs

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Channels and users per listing request (Mattermost's maximum).
LIST_PAGE = 200
# Posts carry Mattermost's clock and jobs this database's: a catch-up starts this much earlier so
# a skew between the two cannot leave a gap (posts read twice are replaced, not duplicated).
CATCH_UP_OVERLAP_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class ReindexSettings:
    """This worker's name, its lease, the page size and how long an outage is waited out."""

    node_id: str
    lease_seconds: float = 30.0
    page_size: int = 200
    retry_seconds: float = 60.0
    # Empty the index without its HNSW index and build it once at the end (a bulk load is several
    # times faster than inserting into the graph); searches meanwhile use the exact scan.
    defer_hnsw: bool = True
    # Pages read and being embedded ahead of the one being committed.
    pages_ahead: int = 8
    # Posts one commit may hold: each takes an advisory lock, and PostgreSQL's lock table is shared
    # by every worker (max_locks_per_transaction x max_connections, 6,400 by default).
    commit_posts: int = 600
    # Partitions of a new job; above 1, each is read by a worker process of its own.
    workers: int = 1

    @property
    def lease_ms(self) -> int:
        """The lease in milliseconds (the database clock's unit)."""
        return int(self.lease_seconds * 1000)


async def indexed_channels(mattermost: MattermostClient) -> list[Channel]:
    """Every team channel, archived ones included (their posts stay searchable by no one, but a
    channel can be unarchived), and every direct and group message channel but DMs with a bot
    (an agent's DMs are not indexed). REST v4 lists DMs and GMs only per member: each user's
    channels are read."""
    channels = {c.id: c for c in await _every_page(mattermost.get_all_channels)}
    users = await _every_page(mattermost.get_users)
    bots = {u.id for u in users if u.is_bot}
    for user in users:
        if user.is_bot:
            continue  # its DMs are all with a bot
        for channel in await mattermost.get_all_channels_for_user(user.id):
            if channel.type == "G" or (channel.type == "D" and not bots & set(channel.name.split("__"))):
                channels.setdefault(channel.id, channel)
    return list(channels.values())


async def _every_page(read: Callable[[int, int], Awaitable[list[T]]]) -> list[T]:
    found: list[T] = []
    page = 0
    while batch := await read(page, LIST_PAGE):
        found += batch
        if len(batch) < LIST_PAGE:
            break
        page += 1
    return found


@dataclass
class _Page:
    """A page read from Mattermost: its posts, their rows being embedded, and the cursor past it."""

    posts: list[PostDoc]
    chunks: asyncio.Future[list[Chunk]]
    cursor: tuple[str, str]


class _Canceled(Exception):
    """An admin asked the job to stop."""


def _doc(post: Post, channel: Channel) -> PostDoc:
    return PostDoc(
        post.id, channel.team_id, channel.id, post.user_id, post.message, post.create_at, post.type, post.from_bot
    )


class Reindexer:
    """Starts, runs, takes over and cancels reindex jobs."""

    def __init__(
        self,
        jobs: JobStore,
        index: SemanticIndex,
        mattermost: MattermostClient,
        settings: ReindexSettings,
        gauges: ReindexGauges | None = None,
        kubernetes: KubernetesJobs | None = None,
    ) -> None:
        self.jobs = jobs
        self.index = index
        self.mattermost = mattermost
        self.settings = settings
        self.gauges = gauges or ReindexGauges()
        # The Kubernetes Job backend: a run's workers are the pods of one Job, not local processes.
        self.kubernetes = kubernetes
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, *, clear: bool) -> Job:
        """Start a job (``clear``: empty the index first; otherwise resume the latest failed or
        orphaned one, or start afresh without emptying). FailedPrecondition while search is off."""
        setup, recorded = await self.index.current()
        job, new = await self.jobs.start(
            self.settings.node_id, self.settings.lease_ms, resume=not clear, partitions=self.settings.workers
        )
        # An index that never recorded a model is empty: starting it is the same as clearing it.
        if new and (clear or recorded is None):
            await self.index.store.reset(setup.space, build_hnsw=not self.settings.defer_hnsw)
        await self._launch(job, resumed=not new)
        return job

    async def catch_up(self) -> Job:
        """Start a job reading only the posts created since the last completed job started (what
        realtime indexing could not see); FailedPrecondition when none completed."""
        await self.index.current()
        job, _ = await self.jobs.start(
            self.settings.node_id,
            self.settings.lease_ms,
            resume=False,
            partitions=self.settings.workers,
            catch_up_overlap_ms=CATCH_UP_OVERLAP_MS,
        )
        await self._launch(job, resumed=False)
        return job

    async def status(self) -> Job:
        """The latest job, settled first (a job whose workers are all gone completed or failed);
        NotFound when there has never been one."""
        job = await self.jobs.latest()
        if job is not None and job.status in ACTIVE:
            try:
                job = await self._settle(job)
            except DomainError as err:  # the status is still worth answering
                logger.warning("settling reindex job %s failed: %s", job.id, err.message)
        self.gauges.observe(job)
        if job is None:
            raise NotFound("no reindex job has run")
        return job

    async def cancel(self) -> Job:
        """Ask the running job to stop (its workers stop after the page they are storing); with
        the Kubernetes backend, delete its Job (and so its pods) and end it at once."""
        job = await self.jobs.request_cancel()
        if self.kubernetes is None:
            return job
        await self.kubernetes.delete(job.id)
        await self.jobs.finish(job.id, "canceled")
        return await self.jobs.job(job.id)

    async def watch_orphans(self) -> None:
        """Forever: settle the running job (renew it while its Kubernetes Job runs, complete or
        fail it once its workers are gone), take over the partitions of local workers that stopped
        renewing their leases and resume them; show the latest job's progress on the gauges."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 2)
            try:
                job = await self.jobs.latest()
                if job is not None and job.status in ACTIVE:
                    job = await self._settle(job)
                self.gauges.observe(job)
                if job is not None and job.status in ACTIVE and self.kubernetes is None and not self._tasks:
                    self._spawn(self.run_job(job.id))
            except DomainError as err:
                logger.warning("looking for orphaned reindex partitions failed: %s", err.message)

    async def _settle(self, job: Job) -> Job:
        """The running ``job`` after its workers' fate is applied: with the Kubernetes backend its
        lease is renewed while its Job runs, and it fails (resumable, with the reason) once the Job
        failed or is gone (collected after its TTL, deleted) with partitions left; with no
        partition left and no live worker (a worker died before completing it) it completes."""
        left = await self.jobs.partitions_left(job.id)
        if self.kubernetes is not None:
            try:
                state = await self.kubernetes.state(job.id)
            except NotFound:
                ended = "is gone"
            else:
                if state.phase == "running":
                    await self.jobs.renew(job.id, self.settings.lease_ms)
                    return await self.jobs.job(job.id)
                ended = f"failed: {state.reason}" if state.phase == "failed" else "ended"
            if left:
                error = f"{left} partitions unfinished: the Kubernetes Job {self.kubernetes.job_name(job.id)} {ended}"
                await self.jobs.finish(job.id, "failed", error)
                return await self.jobs.job(job.id)
        elif left or not job.is_stale:
            return job
        await self._complete(job.id)
        return await self.jobs.job(job.id)

    async def run_job(self, job_id: str, *, wait: bool = False) -> None:
        """Read partitions of the job until none is left to take; with ``wait``, until every
        partition is done or the job ended (a partition another worker holds may come free when
        that worker dies)."""
        while True:
            partition = await self.jobs.claim_partition(job_id, self.settings.node_id, self.settings.lease_ms)
            if partition is not None:
                if not await self._run(partition):
                    return
                continue
            job = await self.jobs.job(job_id)
            if not wait or job.status not in ACTIVE or not await self.jobs.partitions_left(job_id):
                return
            await asyncio.sleep(self.settings.lease_seconds / 2)

    async def close(self) -> None:
        """Stop the jobs this worker runs; their leases run out and another worker resumes them."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _launch(self, job: Job, *, resumed: bool) -> None:
        if self.kubernetes is not None:
            await self._launch_pods(self.kubernetes, job, resumed=resumed)
        elif self.settings.workers > 1:
            self._spawn(self._run_workers(job.id))
        else:
            self._spawn(self.run_job(job.id))

    async def _launch_pods(self, kubernetes: KubernetesJobs, job: Job, *, resumed: bool) -> None:
        """The job's workers as one Kubernetes Job (a resumed job's failed Job is replaced); the
        job fails, resumable, when the API server refuses it."""
        try:
            if resumed:
                await kubernetes.delete(job.id)
            await kubernetes.launch(job.id, job.partitions)
        except DomainError as err:
            await self.jobs.finish(job.id, "failed", err.message)
            raise

    async def _run_workers(self, job_id: str) -> None:
        """The job's workers as child processes (the entry point a Kubernetes Job runs), each
        with this process's environment; any partition a worker leaves is taken by another or
        by the watch for orphans."""
        command = [sys.executable, "-m", "services.index.reindex.worker", "--job-id", job_id]
        workers = [await asyncio.create_subprocess_exec(*command) for _ in range(self.settings.workers)]
        try:
            # The job stays live while its workers start (a process takes a while): a start
            # meanwhile is refused, not taken for a resume of a dead job.
            codes = await self._renewing(job_id, asyncio.gather(*(worker.wait() for worker in workers)))
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.terminate()
                    await worker.wait()
        if any(codes):
            logger.warning("reindex workers exited with an error", extra={"job_id": job_id, "exit_codes": codes})

    async def _renewing(self, job_id: str, work: Awaitable[T]) -> T:
        """``work``'s result, renewing the job's lease until it is done."""
        done = asyncio.ensure_future(work)
        while not done.done():
            await self.jobs.renew(job_id, self.settings.lease_ms)
            await asyncio.wait([done], timeout=self.settings.lease_seconds / 2)
        return done.result()

    async def _complete(self, job_id: str) -> None:
        """Complete the job whose partitions are all done (a no-op once it ended), holding its
        lease meanwhile so that no one else completes it too."""
        if self.settings.defer_hnsw:
            setup, _ = await self.index.current()
            await self._renewing(job_id, self.index.store.build_hnsw(setup.space.dimensions))
        await self.jobs.finish(job_id, "completed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, partition: Partition) -> bool:
        """Read one partition to its end; whether the job still runs."""
        node, job_id = self.settings.node_id, partition.job_id
        try:
            await self._work(await self.jobs.job(job_id), partition)
        except Superseded:
            return False
        except _Canceled:
            await self.jobs.release_partition(partition, node)
            await self.jobs.finish(job_id, "canceled")
            return False
        except DomainError as err:
            logger.warning("reindex job failed", extra={"job_id": job_id, "error": err.message})
            await self.jobs.release_partition(partition, node)
            await self.jobs.finish(job_id, "failed", err.message)
            return False
        except Exception:
            logger.exception("reindex job failed", extra={"job_id": job_id})
            await self.jobs.release_partition(partition, node)
            await self.jobs.finish(job_id, "failed", "internal error; see the index service's log")
            return False
        if await self.jobs.finish_partition(partition, node):
            return True
        # The last partition: this worker completes the job.
        await self._complete(job_id)
        return False

    async def _work(self, job: Job, partition: Partition) -> None:
        setup, _ = await self.index.current()
        channels = sorted(await indexed_channels(self.mattermost), key=lambda c: c.id)
        if not job.total_rows:
            await self.jobs.set_total(job.id, sum(c.total_msg_count for c in channels))
        mine = [c for c in channels if zlib.crc32(c.id.encode()) % job.partitions == partition.part]
        # Reading, embedding and storing overlap: up to ``pages_ahead`` pages are read ahead and
        # embedded concurrently, then committed in the order they were read: the next page with
        # the pages behind it that are embedded already, in one transaction with the cursor past
        # the last of them (a commit's round trips and WAL flush cost more than a page's rows).
        pages: asyncio.Queue[_Page | None] = asyncio.Queue()
        ahead = asyncio.Semaphore(self.settings.pages_ahead)
        reader = asyncio.create_task(self._read(job, partition, setup, mine, pages, ahead))
        held: _Page | None = None
        try:
            while (page := held or await pages.get()) is not None:
                await page.chunks
                group, held = _embedded_behind(page, pages, self.settings.commit_posts)
                status = await self._store(partition, setup, group)
                for _ in group:
                    ahead.release()
                if status == "cancel_requested":
                    raise _Canceled()
            await reader  # its error, when it stopped early
        finally:
            reader.cancel()
            left = [page.chunks for page in [*_drain(pages), *([held] if held else [])]]
            for chunks in left:
                chunks.cancel()
            await asyncio.gather(reader, *left, return_exceptions=True)

    async def _read(
        self,
        job: Job,
        partition: Partition,
        setup: SearchSetup,
        channels: list[Channel],
        pages: asyncio.Queue[_Page | None],
        ahead: asyncio.Semaphore,
    ) -> None:
        try:
            for channel in channels:
                if channel.id < partition.cursor_channel:
                    continue  # done before the partition was resumed
                before = partition.cursor_before if channel.id == partition.cursor_channel else ""
                await self._read_channel(job, setup, channel, before, pages, ahead)
        finally:
            # The end (or this reader's failure): the store loop stops after the pages queued.
            pages.put_nowait(None)

    async def _read_channel(
        self,
        job: Job,
        setup: SearchSetup,
        channel: Channel,
        before: str,
        pages: asyncio.Queue[_Page | None],
        ahead: asyncio.Semaphore,
    ) -> None:
        while True:
            await ahead.acquire()  # released when the page is committed
            page = await self.mattermost.get_posts_before(channel.id, before, self.settings.page_size)
            if not page:
                ahead.release()
                return
            before = page[0].id  # the oldest: the next page ends before it
            # No cutoff filter: Mattermost's clock stamps posts, not this database's, and a post
            # newer than the job's start is stored the same way realtime indexing would store it.
            posts = [_doc(p, channel) for p in page if p.create_at >= job.since_at]
            pages.put_nowait(_Page(posts, asyncio.ensure_future(self._embed(setup, posts)), (channel.id, before)))
            if len(page) < self.settings.page_size or page[0].create_at < job.since_at:
                return  # the channel's oldest post, or older than a catch-up reads

    async def _embed(self, setup: SearchSetup, posts: list[PostDoc]) -> list[Chunk]:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((UpstreamUnavailable, QuotaExceeded)),
            wait=wait_exponential(multiplier=0.2, max=5.0),
            stop=stop_after_delay(self.settings.retry_seconds),
            reraise=True,
        )
        return await retrying(self.index.embed, setup, posts)

    async def _store(self, partition: Partition, setup: SearchSetup, group: list[_Page]) -> str:
        """Store the embedded pages in one transaction with the cursor past the last; the job's status."""
        status = ""
        posts = [post.id for page in group for post in page.posts]

        async def advance(conn: AsyncConnection) -> None:
            nonlocal status
            status = await self.jobs.advance(
                conn, partition, self.settings.node_id, group[-1].cursor, len(posts), self.settings.lease_ms
            )

        chunks = [chunk for page in group for chunk in page.chunks.result()]
        await self.index.store.replace_posts(posts, chunks, setup.space, advance)
        return status


def _embedded_behind(page: _Page, pages: asyncio.Queue[_Page | None], most: int) -> tuple[list[_Page], _Page | None]:
    """``page`` and the queued pages behind it that are embedded already, within ``most`` posts in
    all (one that failed is left for its turn), and the first page taken from the queue that is not."""
    group, posts = [page], len(page.posts)
    while not pages.empty():
        following = pages.get_nowait()
        if following is None:
            pages.put_nowait(None)  # the end stays queued, after this group
            return group, None
        chunks = following.chunks
        posts += len(following.posts)
        if posts > most or not chunks.done() or chunks.cancelled() or chunks.exception() is not None:
            return group, following
        group.append(following)
    return group, None


def _drain(pages: asyncio.Queue[_Page | None]) -> list[_Page]:
    left = []
    while not pages.empty():
        if (page := pages.get_nowait()) is not None:
            left.append(page)
    return left
