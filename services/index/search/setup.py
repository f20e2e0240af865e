"""The search setup the live plugin configuration asks for: embedding space, embedder, chunker.

One embedder per configuration revision: a new revision builds a new one and closes the old (a
search still embedding with it then fails once and is retried by its caller; revisions are rare).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from services.common.errors import FailedPrecondition, InvalidInput
from services.common.http_guard import OutboundPolicy, parse_allowed_hostnames
from services.index.chunking import Chunker, ChunkingOptions
from services.index.embeddings import Embedder, EmbeddingSettings, create_embedder
from services.index.registry import plugin_config
from services.index.registry.config_registry import ConfigRegistry
from services.index.search.semantic import SearchSetup
from services.index.search.store import EmbeddingSpace

logger = logging.getLogger(__name__)


def space_of(settings: EmbeddingSettings) -> EmbeddingSpace:
    """The space the configured provider's vectors live in."""
    return EmbeddingSpace(settings.kind.value, settings.model, settings.dimensions)


class ConfiguredSetup:
    """``SetupSource`` over the registry's live configuration."""

    def __init__(self, config: ConfigRegistry, policy: OutboundPolicy) -> None:
        self._config = config
        self._policy = policy
        self._revision = ""
        self._setup: SearchSetup | None = None
        self._embedder: Embedder | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> SearchSetup:
        """The setup of the active revision; FailedPrecondition while search is off, unlicensed
        or misconfigured (naming the field)."""
        revision = await self._config.live()
        async with self._lock:
            if self._setup is None or revision.revision != self._revision:
                setup, embedder = _build(revision.config, self._config, self._policy)
                if self._embedder is not None:
                    await self._embedder.close()
                self._setup, self._embedder, self._revision = setup, embedder, revision.revision
            return self._setup

    async def close(self) -> None:
        """Close the current embedder's connections."""
        if self._embedder is not None:
            await self._embedder.close()
            self._embedder = None
            self._setup = None


def _build(document: Mapping[str, Any], config: ConfigRegistry, policy: OutboundPolicy) -> tuple[SearchSetup, Embedder]:
    if not plugin_config.search_enabled(document, config.license):
        raise FailedPrecondition("semantic search is not enabled (embeddingSearchConfig, licensed)")
    search = document.get("embeddingSearchConfig") or {}
    try:
        settings = EmbeddingSettings.from_search_config(search)
        chunker = Chunker(ChunkingOptions.from_config(search.get("chunkingOptions")))
    except InvalidInput as exc:
        # A stored configuration that cannot work is a state, not a bad request of this caller.
        raise FailedPrecondition(f"semantic search is misconfigured: {exc.message}") from None
    # allowedUpstreamHostnames holds for embedding providers as for every other upstream call.
    allowed = parse_allowed_hostnames(str(document.get("allowedUpstreamHostnames") or ""))
    embedder = create_embedder(settings, dataclasses.replace(policy, allowed_hostnames=allowed))
    return SearchSetup(space_of(settings), embedder, chunker.split), embedder
