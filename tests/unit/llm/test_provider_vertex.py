"""Vertex AI provider: service-account OAuth exchange and the regional streaming endpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.common.errors import ErrorClass, InvalidInput
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Message,
    ProviderError,
    ReasoningDelta,
    ReasoningEffort,
    ReasoningOptions,
    Role,
    StopReason,
    StreamError,
    TextDelta,
    ToolCallEvent,
    ToolSpec,
)
from services.llm.providers.vertex import VertexProvider, vertex_base_url
from services.llm.streaming import stream_completion
from tests.fakes import gemini as fake_api
from tests.unit.llm.provider_support import VERTEX

QUESTION = (Message.text(Role.USER, "Hi?"),)


UPSTREAM = VERTEX


async def test_service_account_token_is_exchanged_once_and_sent_as_bearer(fake, provider) -> None:
    for _ in range(2):
        events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION))]
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello from fake Gemini"
        assert events[-1] == Done(StopReason.END_TURN)
    assert fake.token_requests == 1
    sent = fake.requests[-1]
    assert sent.path == (
        "/v1/projects/fake-project/locations/us-central1/publishers/google/models/"
        "gemini-3-pro-preview:streamGenerateContent"
    )
    assert sent.query == {"alt": "sse"}
    assert sent.header("authorization") == f"Bearer {fake_api.ACCESS_TOKEN}"
    assert sent.header("x-goog-api-key") == ""


async def test_same_body_as_gemini_with_tools_and_reasoning_level(fake, provider) -> None:
    fake.enqueue(fake_api.function_call("lookup", {"id": 7}, call_id="call-from-vertex"))
    request = CompletionRequest(
        messages=QUESTION,
        tools=(ToolSpec("lookup", "Look up"),),
        reasoning=ReasoningOptions(enabled=True, effort=ReasoningEffort.HIGH),
    )
    events = [e async for e in provider.stream(request)]
    call = next(e.call for e in events if isinstance(e, ToolCallEvent))
    assert (call.id, call.name, call.arguments) == ("call-from-vertex", "lookup", {"id": 7})
    assert events[-1] == Done(StopReason.TOOL_USE)
    body = fake.requests[-1].json()
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "high", "includeThoughts": True}
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "lookup"


async def test_thoughts_stream_as_reasoning(fake, provider) -> None:
    fake.enqueue(fake_api.thinking("hmm", "Yes."))
    events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION))]
    assert events[:3] == [ReasoningDelta("hmm"), ReasoningDelta("", signature="sig-abc"), TextDelta("Yes.")]


async def test_rate_limit_then_success_is_retried_by_the_engine(fake, provider) -> None:
    fake.enqueue(fake_api.http_error(429, "Quota exceeded.", google_status="RESOURCE_EXHAUSTED", retry_after="0"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), base_backoff=0)]
    assert events[-1] == Done(StopReason.END_TURN)
    assert sum(1 for r in fake.requests if r.path.endswith(":streamGenerateContent")) == 2


async def test_stall_ends_with_a_retryable_error(fake, provider) -> None:
    fake.enqueue(fake_api.stall())
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), stall_timeout=0.3)]
    assert isinstance(events[0], StreamError) and events[0].retryable
    assert events[-1] == Done(StopReason.ERROR)


async def test_key_the_token_endpoint_rejects_is_an_admin_problem_and_never_leaks(upstream, fake, provider) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.public_key = other.public_key()  # the fake no longer trusts our key
    with pytest.raises(ProviderError) as info:
        [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION))]
    assert info.value.error_class == ErrorClass.POLICY and not info.value.retryable
    private_key = json.loads(upstream.settings.vertex_auth_credentials)["private_key"]
    assert private_key not in info.value.message and "PRIVATE KEY" not in info.value.message


async def test_metadata_server_supplies_the_token_without_credentials(upstream, fake) -> None:
    provider = VertexProvider(
        dataclasses.replace(upstream.settings, vertex_auth_credentials=""),
        session=upstream.session,
        metadata_url=f"{fake.url}/computeMetadata/v1/instance/service-accounts/default/token",
    )
    events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION))]
    assert events[-1] == Done(StopReason.END_TURN)
    assert fake.requests[-1].header("authorization") == f"Bearer {fake_api.ACCESS_TOKEN}"


async def test_list_models_returns_publisher_model_ids(provider) -> None:
    assert await provider.list_models() == list(fake_api.MODELS)


async def test_malformed_service_account_json_is_rejected_up_front(upstream) -> None:
    with pytest.raises(InvalidInput):
        upstream.provider(vertex_auth_credentials="{not json")
    with pytest.raises(InvalidInput):
        upstream.provider(vertex_auth_credentials='{"type": "service_account", "client_email": "x"}')


async def test_project_and_region_are_required(upstream) -> None:
    with pytest.raises(InvalidInput):
        upstream.provider(vertex_project_id="", api_url="", vertex_auth_credentials="")


def test_global_location_uses_the_unprefixed_host() -> None:
    assert vertex_base_url("global") == "https://aiplatform.googleapis.com"
    assert vertex_base_url("europe-west4") == "https://europe-west4-aiplatform.googleapis.com"


async def test_registry_builds_a_vertex_provider(provider) -> None:
    assert isinstance(provider, VertexProvider)
