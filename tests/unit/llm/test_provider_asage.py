"""Ask Sage provider: the non-streaming /query API surfaced as a one-chunk event stream."""

from __future__ import annotations

import pytest

from services.llm.providers.asage import AskSageProvider
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Message,
    Provider,
    ProviderError,
    Role,
    StopReason,
    StreamError,
    TextDelta,
    ToolCall,
    ToolResult,
)
from services.llm.streaming import stream_completion
from tests.fakes import asage as fake_api
from tests.unit.llm.provider_support import ASAGE

QUESTION = (
    Message.text(Role.SYSTEM, "Be brief."),
    Message.text(Role.USER, "Earlier?"),
    Message.text(Role.ASSISTANT, "Earlier answer."),
    Message.text(Role.USER, "Now?"),
)


UPSTREAM = ASAGE


async def test_query_answer_becomes_one_text_delta_and_done(provider, fake) -> None:
    events = [e async for e in provider.stream(CompletionRequest(messages=QUESTION))]
    assert events == [TextDelta("Ask Sage answer"), Done(StopReason.END_TURN)]
    sent = fake.requests[-1]
    assert sent.path == "/server/query"
    assert sent.header("x-access-tokens") == fake_api.API_KEY
    assert sent.json() == {
        "model": "gpt-4o",
        "persona": "default",
        "system_prompt": "Be brief.",
        "message": [
            {"user": "me", "message": "Earlier?"},
            {"user": "gpt", "message": "Earlier answer."},
            {"user": "me", "message": "Now?"},
        ],
    }


async def test_tool_history_is_folded_into_text(provider, fake) -> None:
    history = (
        *QUESTION,
        Message(Role.ASSISTANT, (ToolCall("c1", "lookup", '{"id": 1}'),)),
        Message(Role.TOOL, (ToolResult("c1", "lookup", "found"),)),
    )
    await _consume(provider, history)
    turns = fake.requests[-1].json()["message"]
    assert turns[-2] == {"user": "gpt", "message": '[called tool lookup with {"id": 1}]'}
    assert turns[-1] == {"user": "me", "message": "[tool lookup returned: found]"}


async def _consume(provider: Provider, messages: tuple[Message, ...]) -> list:
    return [e async for e in provider.stream(CompletionRequest(messages=messages))]


async def test_rate_limit_then_success_via_engine(provider, fake) -> None:
    fake.enqueue(fake_api.http_error(429, "Too many requests", retry_after="0"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), base_backoff=0)]
    assert events == [TextDelta("Ask Sage answer"), Done(StopReason.END_TURN)]


async def test_error_reported_in_a_200_body_is_a_provider_error(provider, fake) -> None:
    fake.enqueue(fake_api.error_in_body("Model not available for your tenant"))
    with pytest.raises(ProviderError) as info:
        await _consume(provider, QUESTION)
    assert info.value.status == 400 and "tenant" in info.value.message


async def test_stall_via_engine(provider, fake) -> None:
    fake.enqueue(fake_api.stall())
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), stall_timeout=0.3)]
    assert isinstance(events[0], StreamError) and events[0].retryable
    assert events[-1] == Done(StopReason.ERROR)


async def test_bad_key_is_not_retried_and_not_echoed(upstream) -> None:
    wrong = "asksage-wrong-key-abcdefghij"
    with pytest.raises(ProviderError) as info:
        [e async for e in stream_completion(upstream.provider(api_key=wrong), CompletionRequest(messages=QUESTION))]
    assert info.value.status == 401 and not info.value.retryable
    assert wrong not in info.value.message


async def test_list_models(provider) -> None:
    assert await provider.list_models() == ["claude-35-sonnet", "gpt-4o"]


async def test_registry_builds_an_asage_provider(provider) -> None:
    assert isinstance(provider, AskSageProvider)
