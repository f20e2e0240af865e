"""Embedding providers for semantic search: OpenAI, OpenAI-compatible and Azure endpoints."""

from __future__ import annotations

from services.common.http_guard import GuardedHttpClient, OutboundPolicy
from services.index.embeddings.base import Embedder
from services.index.embeddings.openai import OpenAIEmbedder, outbound_policy
from services.index.embeddings.settings import EmbeddingSettings, ProviderKind

__all__ = ["Embedder", "EmbeddingSettings", "OpenAIEmbedder", "ProviderKind", "create_embedder"]


def create_embedder(settings: EmbeddingSettings, policy: OutboundPolicy) -> Embedder:
    """The embedder for ``settings``; its requests obey ``policy`` (allowlists, private hosts)."""
    return OpenAIEmbedder(settings, GuardedHttpClient(outbound_policy(settings, policy)))
