"""Scale AI provider: OpenAI chat-completions wire format with Scale's auth headers."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Message,
    ProviderError,
    Role,
    ServiceSettings,
    ServiceType,
    StopReason,
    StreamError,
    TextDelta,
    ToolCallEvent,
    ToolSpec,
    Usage,
)
from services.llm.providers.scale import ScaleProvider
from services.llm.streaming import stream_completion
from tests.fakes import scale as fake_api
from tests.unit.llm.provider_support import SCALE

QUESTION = (Message.text(Role.USER, "Hi?"),)


UPSTREAM = SCALE


async def test_plain_answer_streams_with_scale_headers_and_no_authorization(provider, fake) -> None:
    events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION))]
    # The fake sends all three deltas at once: one read, so they may arrive coalesced.
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Scale says hi"
    assert Usage(input_tokens=9, output_tokens=4) in events
    assert events[-1] == Done(StopReason.END_TURN)
    sent = fake.requests[-1]
    assert sent.path == "/v5/chat/completions"
    assert sent.header("x-api-key") == fake_api.API_KEY
    assert sent.header("x-selected-account-id") == fake_api.ACCOUNT_ID
    assert sent.header("authorization") == ""
    assert sent.json()["model"] == "openai/gpt-4o"


async def test_account_id_falls_back_to_org_id(fake, session) -> None:
    settings = ServiceSettings(
        id="s", type=ServiceType.SCALE, api_key=fake_api.API_KEY, api_url=f"{fake.url}/v5", org_id="acct_org"
    )
    assert ScaleProvider(settings, session).auth_headers()["x-selected-account-id"] == "acct_org"


async def test_tool_call_stream(provider, fake) -> None:
    fake.enqueue(fake_api.tool_call("lookup", '{"id": 7}'))
    events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION, tools=(ToolSpec("lookup", "x"),)))]
    call = next(e.call for e in events if isinstance(e, ToolCallEvent))
    assert (call.name, call.arguments) == ("lookup", {"id": 7})
    assert events[-1] == Done(StopReason.TOOL_USE)


async def test_rate_limit_then_success_via_engine(provider, fake) -> None:
    fake.enqueue(fake_api.http_error(429, "slow down", retry_after="0"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), base_backoff=0)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Scale says hi"


async def test_stall_via_engine(provider, fake) -> None:
    fake.enqueue(fake_api.stall("par"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), stall_timeout=0.3)]
    assert events[0] == TextDelta("par")
    assert isinstance(events[1], StreamError) and events[-1] == Done(StopReason.ERROR)


async def test_bad_key_is_not_retried_and_not_echoed(upstream) -> None:
    wrong = "scale-wrong-key-abcdefghijkl"
    with pytest.raises(ProviderError) as info:
        [e async for e in stream_completion(upstream.provider(api_key=wrong), CompletionRequest(messages=QUESTION))]
    assert info.value.status == 401 and not info.value.retryable
    assert wrong not in info.value.message


async def test_list_models(provider) -> None:
    assert await provider.list_models() == [
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4o",
    ]


async def test_api_url_is_required(session) -> None:
    with pytest.raises(InvalidInput):
        ScaleProvider(ServiceSettings(id="s", type=ServiceType.SCALE, api_key="k"), session)


async def test_registry_builds_a_scale_provider(provider) -> None:
    assert isinstance(provider, ScaleProvider)
