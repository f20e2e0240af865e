"""The embedding clients against the fake embeddings API over loopback HTTP."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.common.errors import FailedPrecondition, InvalidInput, PermissionDenied, QuotaExceeded
from services.common.http_guard import OutboundPolicy
from services.index.embeddings import Embedder, EmbeddingSettings, ProviderKind, create_embedder
from services.index.embeddings.openai import MAX_ATTEMPTS
from tests.fakes.embeddings import FakeEmbeddings, fake_vector

LOOPBACK = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}))


@pytest.fixture
async def fake() -> AsyncIterator[FakeEmbeddings]:
    async with FakeEmbeddings() as server:
        yield server


def search_config(fake: FakeEmbeddings, dimensions: int = 64, **params: Any) -> dict[str, Any]:
    parameters = {"apiKey": fake.api_key, "apiURL": fake.base_url, "embeddingModel": "text-embedding-3-small"}
    return {
        "type": "composite",
        "embeddingProvider": {"type": "openai", "parameters": {**parameters, **params}},
        "dimensions": dimensions,
    }


@pytest.fixture
async def embedder(fake: FakeEmbeddings) -> AsyncIterator[Embedder]:
    client = create_embedder(EmbeddingSettings.from_search_config(search_config(fake)), LOOPBACK)
    yield client
    await client.close()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_openai_embeddings_come_back_in_order_at_the_configured_dimensions(
    fake: FakeEmbeddings, embedder: Embedder
) -> None:
    texts = ["deploy the release on friday", "the release deploy is on friday", "lunch menu"]
    vectors = await embedder.embed(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(fake_vector(text, 64), abs=1e-6)
    assert all(len(v) == 64 and math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > 0.9 > cosine(vectors[0], vectors[2])
    [call] = fake.calls
    assert call.body["model"] == "text-embedding-3-small"
    assert call.body["dimensions"] == 64
    assert call.body["encoding_format"] == "base64"
    assert call.headers["Authorization"] == f"Bearer {fake.api_key}"


async def test_an_openai_compatible_server_is_asked_for_floats_and_needs_no_key(fake: FakeEmbeddings) -> None:
    fake.api_key = ""
    config = search_config(fake, dimensions=32, apiKey="")
    config["embeddingProvider"]["type"] = "openai-compatible"
    client = create_embedder(EmbeddingSettings.from_search_config(config), LOOPBACK)
    try:
        fake.api_key = ""
        [vector] = await client.embed(["hello world"])
    finally:
        await client.close()
    assert vector == pytest.approx(fake_vector("hello world", 32))
    assert fake.calls[0].body["encoding_format"] == "float"


async def test_azure_names_the_deployment_in_the_url_and_sends_its_api_key(fake: FakeEmbeddings) -> None:
    config = {
        "embeddingProvider": {
            "type": "bifrost",
            "parameters": {"provider": "azure", "apiKey": fake.api_key, "apiURL": fake.url, "model": "embed-small"},
        },
        "vectorStore": {"type": "pgvector", "parameters": {"dimensions": 48}},
    }
    settings = EmbeddingSettings.from_search_config(config)
    assert settings.kind is ProviderKind.AZURE and settings.dimensions == 48
    client = create_embedder(settings, LOOPBACK)
    try:
        [vector] = await client.embed(["status report"])
    finally:
        await client.close()
    assert vector == pytest.approx(fake_vector("status report", 48), abs=1e-6)
    [call] = fake.calls
    assert call.path == "/openai/deployments/embed-small/embeddings"
    assert call.headers["api-key"] == fake.api_key and "Authorization" not in call.headers
    assert "model" not in call.body


async def test_batches_respect_the_providers_input_count_cap(fake: FakeEmbeddings) -> None:
    fake.max_inputs = 100
    settings = EmbeddingSettings.from_search_config(search_config(fake, maxInputsPerRequest=100))
    assert EmbeddingSettings.from_search_config(search_config(fake)).max_inputs == 2048  # OpenAI's cap
    client = create_embedder(settings, LOOPBACK)
    try:
        vectors = await client.embed([f"message {n}" for n in range(250)])
    finally:
        await client.close()
    assert len(vectors) == 250
    assert vectors[234] == pytest.approx(fake_vector("message 234", 64), abs=1e-6)
    assert sorted(c.inputs for c in fake.calls) == [50, 100, 100]
    assert all(c.status == 200 for c in fake.calls)


async def test_batches_respect_the_providers_token_cap(fake: FakeEmbeddings) -> None:
    fake.max_request_tokens = 1000
    settings = EmbeddingSettings.from_search_config(search_config(fake, maxTokensPerRequest=1000))
    client = create_embedder(settings, LOOPBACK)
    try:
        texts = ["word " * 99 for _ in range(25)]  # 99 tokens each
        vectors = await client.embed(texts)
    finally:
        await client.close()
    assert len(vectors) == 25
    assert all(c.status == 200 and c.tokens <= 1000 for c in fake.calls)
    assert sorted(c.inputs for c in fake.calls) == [5, 10, 10]


async def test_a_text_over_the_models_input_limit_is_refused_naming_the_limit(embedder: Embedder) -> None:
    with pytest.raises(InvalidInput, match="8191 tokens") as raised:
        await embedder.embed(["word " * 9000])
    assert raised.value.field == "input"


async def test_a_wrong_key_is_an_admin_problem_and_never_echoes_the_key(fake: FakeEmbeddings) -> None:
    client = create_embedder(
        EmbeddingSettings.from_search_config(search_config(fake, apiKey="sk-wrong-key-abcdefgh")), LOOPBACK
    )
    try:
        with pytest.raises(FailedPrecondition, match="HTTP 401") as raised:
            await client.embed(["x"])
    finally:
        await client.close()
    assert "sk-wrong" not in raised.value.message


async def test_vectors_of_another_size_than_configured_are_refused(fake: FakeEmbeddings) -> None:
    config = search_config(fake, dimensions=1536, embeddingModel="text-embedding-ada-002")
    config["dimensions"] = 768
    client = create_embedder(EmbeddingSettings.from_search_config(config), LOOPBACK)
    try:
        with pytest.raises(FailedPrecondition, match="returned 1536 dimensions"):
            await client.embed(["x"])
    finally:
        await client.close()
    assert "dimensions" not in fake.calls[0].body  # ada-002 takes no dimensions field


async def test_rate_limited_requests_are_sent_again_after_the_providers_retry_after(
    fake: FakeEmbeddings, embedder: Embedder
) -> None:
    fake.retry_after = 0.2
    fake.refuse_next(2)
    [vector] = await embedder.embed(["retry me"])
    assert vector == pytest.approx(fake_vector("retry me", 64), abs=1e-6)
    assert [c.status for c in fake.calls] == [429, 429, 200]
    assert all(later.at - earlier.at >= 0.2 for earlier, later in itertools.pairwise(fake.calls))


async def test_an_outage_is_retried_with_backoff(fake: FakeEmbeddings, embedder: Embedder) -> None:
    fake.refuse_next(2, status=503)
    assert len(await embedder.embed(["a", "b"])) == 2
    assert [c.status for c in fake.calls] == [503, 503, 200]


async def test_a_provider_rate_limiting_every_attempt_ends_in_quota_exceeded_with_its_retry_after(
    fake: FakeEmbeddings, embedder: Embedder
) -> None:
    fake.retry_after = 0.01
    fake.refuse_next(MAX_ATTEMPTS)
    with pytest.raises(QuotaExceeded) as raised:
        await embedder.embed(["x"])
    assert raised.value.retry_after == pytest.approx(0.01)
    assert len(fake.calls) == MAX_ATTEMPTS


async def test_concurrency_adapts_to_429s_below_its_ceiling(fake: FakeEmbeddings) -> None:
    fake.latency, fake.retry_after, fake.rate_limit_every = 0.005, 0, 3
    settings = EmbeddingSettings.from_search_config(search_config(fake, maxInputsPerRequest=1, maxConcurrency=6))
    client = create_embedder(settings, LOOPBACK)
    try:
        assert client.concurrency == 6
        vectors = await client.embed([f"text {n}" for n in range(60)])
        assert len(vectors) == 60
        assert client.concurrency < 6  # every third request refused: the limit was cut and stays low
    finally:
        await client.close()
    assert fake.max_in_flight <= 6
    assert fake.rate_limited >= 20


async def test_a_token_budget_paces_requests_within_five_percent_despite_latency_and_429s(
    fake: FakeEmbeddings,
) -> None:
    fake.latency, fake.retry_after, fake.rate_limit_every = 0.02, 0.05, 7
    budget = 120_000  # tokens a minute: 2,000 a second
    settings = EmbeddingSettings.from_search_config(
        search_config(fake, tokensPerMinute=budget, maxInputsPerRequest=10, maxConcurrency=4)
    )
    client = create_embedder(settings, LOOPBACK)
    try:
        await client.embed([f"chunk number {n} of the budget test" for n in range(300)])
    finally:
        await client.close()
    calls = fake.calls
    assert fake.rate_limited > 0
    # Every token sent counts, refused requests' too: they are what a provider's limiter sees.
    sent_before_last = sum(c.tokens for c in calls[:-1])
    rate_per_minute = sent_before_last / (calls[-1].at - calls[0].at) * 60
    assert rate_per_minute <= budget * 1.05


async def test_provider_urls_go_through_the_outbound_guard(fake: FakeEmbeddings) -> None:
    client = create_embedder(EmbeddingSettings.from_search_config(search_config(fake)), OutboundPolicy())
    try:
        with pytest.raises(PermissionDenied) as refused:
            await client.embed(["x"])
    finally:
        await client.close()
    assert fake.calls == []
    # The address is the admin's business: the searching user reads what to ask for, not where it is.
    assert "allowedUpstreamHostnames" in refused.value.message and "127.0.0.1" not in refused.value.message


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "embeddingSearchConfig.embeddingProvider"),
        ({"embeddingProvider": {"type": "cohere"}, "dimensions": 8}, "embeddingSearchConfig.embeddingProvider.type"),
        (
            {"embeddingProvider": {"type": "openai", "parameters": {"apiKey": "k"}}, "dimensions": 0},
            "embeddingSearchConfig.dimensions",
        ),
        (
            {"embeddingProvider": {"type": "openai", "parameters": {}}, "dimensions": 8},
            "embeddingSearchConfig.embeddingProvider.parameters.apiKey",
        ),
        (
            {
                "embeddingProvider": {"type": "openai-compatible", "parameters": {"embeddingModel": "m"}},
                "dimensions": 8,
            },
            "embeddingSearchConfig.embeddingProvider.parameters.apiURL",
        ),
        (
            {
                "embeddingProvider": {"type": "openai", "parameters": {"apiKey": "k", "tokensPerMinute": -5}},
                "dimensions": 8,
            },
            "embeddingSearchConfig.embeddingProvider.parameters.tokensPerMinute",
        ),
    ],
)
def test_bad_provider_settings_name_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        EmbeddingSettings.from_search_config(config)
    assert raised.value.field == field


def test_the_model_key_changes_with_provider_model_or_dimensions() -> None:
    base = {"embeddingProvider": {"type": "openai", "parameters": {"apiKey": "k"}}, "dimensions": 512}
    settings = EmbeddingSettings.from_search_config(base)
    assert settings.model_key == "openai:text-embedding-3-small:512"
    assert EmbeddingSettings.from_search_config({**base, "dimensions": 256}).model_key != settings.model_key
