"""Embedding providers for semantic search: OpenAI, OpenAI-compatible and Azure endpoints, and a
local model on the CPU."""

from __future__ import annotations

from services.common.http_guard import GuardedHttpClient, OutboundPolicy
from services.index.embeddings.base import Embedder
from services.index.embeddings.local import LocalEmbedder
from services.index.embeddings.openai import OpenAIEmbedder, outbound_policy
from services.index.embeddings.settings import EmbeddingSettings, ProviderKind

__all__ = ["Embedder", "EmbeddingSettings", "LocalEmbedder", "OpenAIEmbedder", "ProviderKind", "create_embedder"]


def create_embedder(settings: EmbeddingSettings, policy: OutboundPolicy) -> Embedder:
    """The embedder for ``settings``; a provider's requests obey ``policy`` (allowlists, private hosts).

    Raises ``FailedPrecondition`` for the local embedder when its optional extra is not installed.
    """
    if settings.kind is ProviderKind.LOCAL:
        return LocalEmbedder(settings)
    return OpenAIEmbedder(settings, GuardedHttpClient(outbound_policy(settings, policy)))
