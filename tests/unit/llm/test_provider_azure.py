"""Azure OpenAI provider (deployment chat completions and v1 Responses) against ``FakeOpenAI``."""

from __future__ import annotations

import pytest

from services.common.errors import ErrorClass, InvalidInput
from services.llm.providers.azure import CHAT_API_VERSION, AzureChatProvider, AzureResponsesProvider
from services.llm.providers.base import (
    CompletionRequest,
    Message,
    ProviderError,
    Role,
)
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check
from tests.unit.llm.provider_support import AZURE, Upstream

UPSTREAM = AZURE


@pytest.fixture(params=[False, True], ids=["chat", "responses"])
def harness(request, upstream: Upstream) -> Upstream:
    return upstream.with_settings(use_responses_api=request.param)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, harness: Upstream) -> None:
    await run_check(check, harness)


async def test_chat_goes_to_the_deployment_url_with_api_key_header(upstream, fake):
    provider = upstream.provider()
    assert isinstance(provider, AzureChatProvider)
    await collect(provider)
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": CHAT_API_VERSION}
    assert sent.headers["api-key"] == fake.api_key
    assert "Authorization" not in sent.headers
    assert "model" not in sent.body
    assert sent.body["max_completion_tokens"] == 8192


async def test_responses_variant_uses_the_v1_surface_with_the_deployment_as_model(upstream, fake):
    provider = upstream.provider(use_responses_api=True)
    assert isinstance(provider, AzureResponsesProvider)
    await collect(provider, CompletionRequest(messages=(Message.text(Role.USER, "Hi"),), user_id="u1"))
    sent = fake.requests[-1]
    assert sent.path == "/openai/v1/responses"
    assert sent.headers["api-key"] == fake.api_key
    assert sent.body["model"] == "my-deployment"
    assert "user" not in sent.body


async def test_a_missing_deployment_is_a_caller_error_quoting_azure(upstream):
    with pytest.raises(ProviderError) as caught:
        await collect(upstream.provider(default_model="gone"))
    assert caught.value.error_class == ErrorClass.CALLER
    assert "deployment for this resource does not exist" in caught.value.message


async def test_an_endpoint_is_required(upstream):
    with pytest.raises(InvalidInput):
        await collect(upstream.provider(api_url=""))


async def test_list_models_reports_the_configured_deployment(upstream):
    assert await upstream.provider().list_models() == ["my-deployment"]
