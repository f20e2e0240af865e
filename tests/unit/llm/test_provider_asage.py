"""Ask Sage provider: the non-streaming /query API surfaced as a one-chunk event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from services.llm.providers import create_provider
from services.llm.providers.asage import AskSageProvider
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
    ToolCall,
    ToolResult,
)
from services.llm.streaming import stream_completion
from tests.fakes import asage as fake

QUESTION = (
    Message.text(Role.SYSTEM, "Be brief."),
    Message.text(Role.USER, "Earlier?"),
    Message.text(Role.ASSISTANT, "Earlier answer."),
    Message.text(Role.USER, "Now?"),
)


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[fake.FakeAskSage]:
    srv = fake.FakeAskSage()
    await srv.start()
    yield srv
    await srv.close()


@pytest_asyncio.fixture(loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _provider(server: fake.FakeAskSage, session: aiohttp.ClientSession, key: str = fake.API_KEY) -> AskSageProvider:
    settings = ServiceSettings(
        id="a", type=ServiceType.ASAGE, api_key=key, api_url=f"{server.url}/server", default_model="gpt-4o"
    )
    return AskSageProvider(settings, session)


async def test_query_answer_becomes_one_text_delta_and_done(server, session) -> None:
    events = [e async for e in _provider(server, session).stream(CompletionRequest(messages=QUESTION))]
    assert events == [TextDelta("Ask Sage answer"), Done(StopReason.END_TURN)]
    sent = server.requests[-1]
    assert sent.path == "/server/query"
    assert sent.header("x-access-tokens") == fake.API_KEY
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


async def test_tool_history_is_folded_into_text(server, session) -> None:
    history = (
        *QUESTION,
        Message(Role.ASSISTANT, (ToolCall("c1", "lookup", '{"id": 1}'),)),
        Message(Role.TOOL, (ToolResult("c1", "lookup", "found"),)),
    )
    await _consume(_provider(server, session), history)
    turns = server.requests[-1].json()["message"]
    assert turns[-2] == {"user": "gpt", "message": '[called tool lookup with {"id": 1}]'}
    assert turns[-1] == {"user": "me", "message": "[tool lookup returned: found]"}


async def _consume(provider: AskSageProvider, messages: tuple[Message, ...]) -> list:
    return [e async for e in provider.stream(CompletionRequest(messages=messages))]


async def test_rate_limit_then_success_via_engine(server, session) -> None:
    server.enqueue(fake.http_error(429, "Too many requests", retry_after="0"))
    events = [
        e
        async for e in stream_completion(
            _provider(server, session), CompletionRequest(messages=QUESTION), base_backoff=0
        )
    ]
    assert events == [TextDelta("Ask Sage answer"), Done(StopReason.END_TURN)]


async def test_error_reported_in_a_200_body_is_a_provider_error(server, session) -> None:
    server.enqueue(fake.error_in_body("Model not available for your tenant"))
    with pytest.raises(ProviderError) as info:
        await _consume(_provider(server, session), QUESTION)
    assert info.value.status == 400 and "tenant" in info.value.message


async def test_stall_via_engine(server, session) -> None:
    server.enqueue(fake.stall())
    events = [
        e
        async for e in stream_completion(
            _provider(server, session), CompletionRequest(messages=QUESTION), stall_timeout=0.3
        )
    ]
    assert isinstance(events[0], StreamError) and events[0].retryable
    assert events[-1] == Done(StopReason.ERROR)


async def test_bad_key_is_not_retried_and_not_echoed(server, session) -> None:
    wrong = "asksage-wrong-key-abcdefghij"
    with pytest.raises(ProviderError) as info:
        [e async for e in stream_completion(_provider(server, session, wrong), CompletionRequest(messages=QUESTION))]
    assert info.value.status == 401 and not info.value.retryable
    assert wrong not in info.value.message


async def test_list_models(server, session) -> None:
    assert await _provider(server, session).list_models() == ["claude-35-sonnet", "gpt-4o"]


async def test_registry_builds_an_asage_provider(server, session) -> None:
    assert isinstance(create_provider(_provider(server, session).settings, session), AskSageProvider)
