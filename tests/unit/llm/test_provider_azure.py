"""Azure OpenAI provider (deployment chat completions and v1 Responses) against ``FakeOpenAI``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.common.errors import ErrorClass, InvalidInput
from services.common.http import new_client_session
from services.llm.providers.azure import CHAT_API_VERSION, AzureChatProvider, AzureResponsesProvider
from services.llm.providers.base import (
    CompletionRequest,
    Message,
    ProviderError,
    Role,
    ServiceSettings,
    ServiceType,
)
from tests.fakes.openai import FakeOpenAI
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check
from tests.unit.llm.openai_harness import OpenAIHarness


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key="azure-key-0123456789abcdef") as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_client_session(trust_env=False) as s:
        yield s


def _settings(fake: FakeOpenAI, **overrides: object) -> ServiceSettings:
    base = ServiceSettings(
        id="azure-test",
        type=ServiceType.AZURE,
        api_key=fake.api_key,
        api_url=fake.url + "/",
        default_model="my-deployment",
    )
    return ServiceSettings(**{**base.__dict__, **overrides})  # type: ignore[arg-type]


@pytest.fixture(params=[False, True], ids=["chat", "responses"])
def harness(request, fake: FakeOpenAI, session: aiohttp.ClientSession) -> OpenAIHarness:
    return OpenAIHarness(fake, session, _settings(fake, use_responses_api=request.param))


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, harness: OpenAIHarness) -> None:
    await run_check(check, harness)


async def test_chat_goes_to_the_deployment_url_with_api_key_header(fake, session):
    harness = OpenAIHarness(fake, session, _settings(fake))
    provider = harness.provider()
    assert isinstance(provider, AzureChatProvider)
    await collect(provider)
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.query == {"api-version": CHAT_API_VERSION}
    assert sent.headers["api-key"] == fake.api_key
    assert "Authorization" not in sent.headers
    assert "model" not in sent.body
    assert sent.body["max_completion_tokens"] == 8192


async def test_responses_variant_uses_the_v1_surface_with_the_deployment_as_model(fake, session):
    harness = OpenAIHarness(fake, session, _settings(fake, use_responses_api=True))
    provider = harness.provider()
    assert isinstance(provider, AzureResponsesProvider)
    await collect(provider, CompletionRequest(messages=(Message.text(Role.USER, "Hi"),), user_id="u1"))
    sent = fake.requests[-1]
    assert sent.path == "/openai/v1/responses"
    assert sent.headers["api-key"] == fake.api_key
    assert sent.body["model"] == "my-deployment"
    assert "user" not in sent.body


async def test_a_missing_deployment_is_a_caller_error_quoting_azure(fake, session):
    harness = OpenAIHarness(fake, session, _settings(fake))
    with pytest.raises(ProviderError) as caught:
        await collect(harness.provider(default_model="gone"))
    assert caught.value.error_class == ErrorClass.CALLER
    assert "deployment for this resource does not exist" in caught.value.message


async def test_an_endpoint_is_required(fake, session):
    harness = OpenAIHarness(fake, session, _settings(fake, api_url=""))
    with pytest.raises(InvalidInput):
        await collect(harness.provider())


async def test_list_models_reports_the_configured_deployment(fake, session):
    harness = OpenAIHarness(fake, session, _settings(fake))
    assert await harness.provider().list_models() == ["my-deployment"]
