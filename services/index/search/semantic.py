"""Semantic search over Mattermost posts: what is indexed, how a query is checked, and which
channels it may match. SQL lives in ``store.py``; embeddings and chunking come from the configured
``SearchSetup``; the caller's channels from Mattermost at every search."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.errors import FailedPrecondition, InvalidInput
from services.common.mattermost import MattermostClient
from services.index.embeddings import Embedder
from services.index.search.store import Chunk, EmbeddingSpace, Hit, SearchPlan, VectorStore

MAX_QUERY_CHARS = 4000
DEFAULT_LIMIT = 10
MAX_LIMIT = 100


@dataclass(frozen=True)
class SearchSetup:
    """What the current configuration says search runs with."""

    space: EmbeddingSpace
    embedder: Embedder
    split: Callable[[str], list[str]]


# The configured setup; raises FailedPrecondition while search is off or not licensed.
SetupSource = Callable[[], Awaitable[SearchSetup]]
# The ids of the channels a user can read now.
Membership = Callable[[str], Awaitable[Sequence[str]]]


class MattermostMembership:
    """``Membership`` asked of Mattermost at every search, uncached, so a removal takes effect at
    once; archived channels are left out, as in the plugin, even when Mattermost lists them."""

    def __init__(self, mattermost: MattermostClient) -> None:
        self._mattermost = mattermost

    async def __call__(self, user_id: str) -> list[str]:
        """The user's readable channels: teams', direct and group messages."""
        return [c.id for c in await self._mattermost.get_all_channels_for_user(user_id) if not c.delete_at]


@dataclass(frozen=True)
class PostDoc:
    """A Mattermost post as the index sees it."""

    id: str
    team_id: str
    channel_id: str
    user_id: str
    message: str
    create_at: int
    type: str = ""
    from_bot: bool = False

    @property
    def indexable(self) -> bool:
        """Users' own posts with text: system posts (a type) and bot posts are not searched."""
        return not self.type and not self.from_bot and bool(self.message.strip())


@dataclass(frozen=True)
class SearchQuery:
    """A search as asked, before it is checked; ``user_id`` names the user whose channels it
    searches."""

    query: str
    user_id: str = ""
    team_id: str = ""
    channel_id: str = ""
    limit: int = 0
    offset: int = 0
    min_score: float = 0.0


@dataclass(frozen=True)
class ScanBounds:
    """Where the exact scan ends and the HNSW scan begins, and how far the latter may read."""

    # Measured at 100k random 64-dimension chunks (bench/semantic_search.py): ranking 5,000 rows
    # exactly costs what an HNSW scan of them does (~20 ms), and the latter's recall was 0.55.
    exact_scan_rows: int = 10_000
    max_scan_tuples: int = 100_000
    # Candidates the HNSW scan keeps per step: at 100k chunks a user in half the channels got a
    # recall@10 of 0.78 at 200, 0.93 at 400 and 0.99 at 1000 (pgvector's maximum).
    ef_search: int = 1000


@dataclass(frozen=True)
class Found:
    """A search's best matches, the scans that found them and how many channels it searched."""

    hits: list[Hit]
    scans: str
    channels: int


class SemanticIndex:
    """Indexes posts in the configured embedding space and searches them."""

    def __init__(self, store: VectorStore, setup: SetupSource, bounds: ScanBounds, membership: Membership) -> None:
        self.store = store
        self._setup = setup
        self._bounds = bounds
        self._membership = membership

    async def ready(self) -> bool:
        """Whether a search can be answered now: configured, licensed, and not awaiting a reindex."""
        try:
            setup, recorded = await self.current()
        except FailedPrecondition:
            return False
        return recorded in (None, setup.space)

    async def current(self) -> tuple[SearchSetup, EmbeddingSpace | None]:
        """The configured setup and the space of the stored vectors (None when nothing is)."""
        return await self._setup(), await self.store.space()

    async def index_posts(self, posts: Sequence[PostDoc]) -> tuple[int, int]:
        """Embed and store ``posts``, replacing their earlier rows; (posts stored, rows). Posts
        that are not indexable lose their rows (an edit may turn a post into one)."""
        setup, recorded = await self.current()
        if recorded is None:
            recorded = await self.store.adopt_space(setup.space)
        if recorded != setup.space:
            raise FailedPrecondition("the embedding model changed since the index was built: reindex before indexing")
        return await self.write(setup, posts)

    async def write(
        self,
        setup: SearchSetup,
        posts: Sequence[PostDoc],
        then: Callable[[AsyncConnection], Awaitable[object]] | None = None,
    ) -> tuple[int, int]:
        """Chunk, embed and store ``posts`` in ``setup``'s space (``then`` in the same
        transaction); (posts stored, rows)."""
        chunks = await self.embed(setup, posts)
        await self.store.replace_posts([p.id for p in posts], chunks, setup.space, then)
        return sum(1 for p in posts if p.indexable), len(chunks)

    async def embed(self, setup: SearchSetup, posts: Sequence[PostDoc]) -> list[Chunk]:
        """The rows of the indexable ``posts``: chunked and embedded in ``setup``'s space."""
        pieces = [(post, setup.split(post.message) or [post.message]) for post in posts if post.indexable]
        texts = [text for _, parts in pieces for text in parts]
        vectors = await setup.embedder.embed(texts) if texts else []
        if len(vectors) != len(texts):
            raise FailedPrecondition("the embedding provider answered a different number of vectors than asked")
        chunks: list[Chunk] = []
        flat = iter(vectors)
        for post, parts in pieces:
            for index, part in enumerate(parts):
                chunks.append(
                    Chunk(
                        post.id,
                        index,
                        len(parts),
                        post.channel_id,
                        post.team_id,
                        post.user_id,
                        post.create_at,
                        part,
                        next(flat),
                    )
                )
        return chunks

    async def delete_posts(self, post_ids: Sequence[str]) -> int:
        """Remove the posts' rows; how many had any."""
        return await self.store.delete_posts(post_ids) if post_ids else 0

    async def search(self, asked: SearchQuery) -> Found:
        """The best matches among the channels the caller can read, filtered as asked."""
        query = asked.query.strip()
        if not query:
            raise InvalidInput("query must not be empty", field="query")
        if len(asked.query) > MAX_QUERY_CHARS:
            raise InvalidInput(f"query must be at most {MAX_QUERY_CHARS} characters", field="query")
        if not 0 <= asked.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 0 and {MAX_LIMIT}", field="limit")
        if asked.offset < 0:
            raise InvalidInput("offset must not be negative", field="offset")
        if not 0.0 <= asked.min_score <= 1.0:
            raise InvalidInput("min_score must be between 0 and 1", field="min_score")
        if not asked.user_id:
            raise InvalidInput("user_id is required: a search looks in that user's channels", field="user_id")
        setup = await self._setup()
        # Membership and the query's vector are asked at once: neither round trip waits for the
        # other. The search checks the stored space in its own statement.
        channels, (vector,) = await asyncio.gather(self._channels(asked), setup.embedder.embed([query]))
        plan = SearchPlan(
            channel_ids=channels,
            team_id=asked.team_id,
            limit=asked.limit or DEFAULT_LIMIT,
            offset=asked.offset,
            min_score=asked.min_score,
            exact_scan_rows=self._bounds.exact_scan_rows,
            max_scan_tuples=self._bounds.max_scan_tuples,
            ef_search=self._bounds.ef_search,
        )
        hits, scans = await self.store.search(vector, setup.space, plan)
        return Found(hits, scans, len(channels))

    async def _channels(self, asked: SearchQuery) -> list[str]:
        return permitted_channels(await self._membership(asked.user_id), asked.channel_id)


def permitted_channels(readable: Sequence[str], channel_id: str) -> list[str]:
    """The readable channels, narrowed to ``channel_id`` when one is asked (a channel the caller
    cannot read narrows them to none)."""
    unique = sorted(set(readable))
    if channel_id:
        return [channel_id] if channel_id in unique else []
    return unique
