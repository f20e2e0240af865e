"""Cohere provider against a fake v2 Chat API speaking the real SSE wire format."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.common.errors import ErrorClass
from services.common.http import new_client_session
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ProviderError,
    ReasoningDelta,
    Role,
    ServiceSettings,
    ServiceType,
    StopReason,
    StreamError,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    ToolSpec,
    Usage,
)
from services.llm.providers.cohere import CohereProvider
from services.llm.streaming import stream_completion
from tests.fakes import cohere as fake_api
from tests.fakes.cohere import API_KEY, FakeCohere
from tests.fakes.scripted import Reply
from tests.unit.llm.conformance import Check, Scenario, run_check
from tests.unit.llm.scripted_harness import CHECKS_WITHOUT_QUOTA, ScriptedHarness, split

HELLO = (Message(Role.SYSTEM, (TextPart("Be brief."),)), Message.text(Role.USER, "Hi"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeCohere]:
    server = FakeCohere()
    await server.start()
    yield server
    await server.close()


def _settings(url: str) -> ServiceSettings:
    return ServiceSettings(
        id="cohere-test",
        type=ServiceType.COHERE,
        api_key=API_KEY,
        api_url=url,
        default_model="command-a-03-2025",
    )


@pytest.fixture
async def provider(fake: FakeCohere) -> AsyncIterator[CohereProvider]:
    p = CohereProvider(_settings(fake.url))
    yield p
    await p.aclose()


async def _collect(events: AsyncIterator[Event]) -> list[Event]:
    return [e async for e in events]


def _engine(provider: CohereProvider, request: CompletionRequest, stall: float = 5.0) -> AsyncIterator[Event]:
    return stream_completion(provider, request, max_attempts=3, base_backoff=0.01, stall_timeout=stall)


async def test_plain_stream_yields_each_token_then_usage_and_done(fake, provider):
    fake.enqueue(fake_api.text(["Hel", "lo"]))

    events = await _collect(provider.stream(CompletionRequest(messages=HELLO)))

    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(input_tokens=70, output_tokens=2),
        Done(StopReason.END_TURN),
    ]
    sent = fake.requests[0]
    assert sent.path == "/v2/chat"
    assert sent.header("Authorization") == f"Bearer {API_KEY}"
    body = sent.json()
    assert body["model"] == "command-a-03-2025"
    assert body["stream"] is True
    assert body["max_tokens"] == 8192
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]


async def test_tool_call_arguments_are_assembled_and_the_plan_is_reasoning(fake, provider):
    fake.enqueue(fake_api.tool_call("call_1", "search", ['{"q"', ': "docs"}'], plan=("I will ", "search.")))
    tools = (ToolSpec("search", "Search", {"type": "object", "properties": {"q": {"type": "string"}}}),)

    events = await _collect(provider.stream(CompletionRequest(messages=HELLO, tools=tools)))

    assert events[:2] == [ReasoningDelta("I will "), ReasoningDelta("search.")]
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [ToolCall("call_1", "search", '{"q": "docs"}', {"q": "docs"}, True)]
    assert events[-1] == Done(StopReason.TOOL_USE)
    assert fake.requests[0].json()["tools"] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "Search", "parameters": tools[0].input_schema},
        }
    ]


async def test_tool_history_images_and_json_schema_use_v2_shapes(fake, provider):
    history = (
        Message(Role.USER, (TextPart("Look"), ImagePart("image/png", b"\x89PNG"))),
        Message(Role.ASSISTANT, (ToolCall("c1", "zoom", '{"x": 1}', {"x": 1}),)),
        Message(Role.TOOL, (ToolResult("c1", "zoom", "a cat"),)),
    )
    schema = {"type": "object", "properties": {"animal": {"type": "string"}}}

    await _collect(provider.stream(CompletionRequest(messages=history, json_schema=schema)))

    body = fake.requests[0].json()
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
            ],
        },
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "zoom", "arguments": '{"x": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
    ]
    assert body["response_format"] == {"type": "json_object", "json_schema": schema}


async def test_citations_with_urls_become_annotations(fake, provider):
    fake.enqueue(fake_api.cited("Mattermost is chat.", "https://mattermost.com", "Mattermost"))

    events = await _collect(provider.stream(CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, Annotation)] == [
        Annotation("https://mattermost.com", "Mattermost", 0, len("Mattermost is chat."))
    ]


async def test_rate_limit_before_the_first_token_is_retried_then_succeeds(fake, provider):
    fake.enqueue(fake_api.http_error(429, "too many requests", retry_after="0"), fake_api.text(["ok"]))

    events = await _collect(_engine(provider, CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert len(fake.requests) == 2


async def test_unknown_model_is_a_caller_error_without_retry(fake, provider):
    fake.enqueue(fake_api.http_error(404, "model 'nope' not found"))

    with pytest.raises(ProviderError) as caught:
        await _collect(_engine(provider, CompletionRequest(messages=HELLO, model="nope")))

    assert caught.value.error_class is ErrorClass.CALLER
    assert len(fake.requests) == 1


async def test_error_finish_mid_stream_keeps_partial_text_and_ends_with_stream_error(fake, provider):
    fake.enqueue(fake_api.error_mid_stream(["partial"]))

    events = await _collect(_engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("partial")
    assert isinstance(events[1], StreamError)
    assert events[2] == Done(StopReason.ERROR)
    assert len(fake.requests) == 1


async def test_stalled_stream_is_ended_by_the_watchdog(fake, provider):
    fake.enqueue(fake_api.stall(["before"]))

    events = await _collect(_engine(provider, CompletionRequest(messages=HELLO), stall=0.3))

    assert events[0] == TextDelta("before")
    assert isinstance(events[1], StreamError) and events[1].retryable
    assert events[2] == Done(StopReason.ERROR)


async def test_malformed_event_ends_the_stream_with_an_error(fake, provider):
    fake.enqueue(fake_api.malformed(["x"]))

    events = await _collect(_engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("x")
    assert isinstance(events[1], StreamError)
    assert events[-1] == Done(StopReason.ERROR)


async def test_api_key_never_appears_in_errors_or_logs(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue(fake_api.http_error(401, f"invalid api token {API_KEY}"))
    provider = CohereProvider(_settings(fake.url))
    try:
        with pytest.raises(ProviderError) as caught:
            await _collect(_engine(provider, CompletionRequest(messages=HELLO)))
    finally:
        await provider.aclose()
    assert caught.value.status == 401
    assert API_KEY not in caught.value.message and API_KEY not in str(caught.value)
    assert API_KEY not in caplog.text


async def test_list_models_follows_page_tokens(fake, provider):
    assert await provider.list_models() == list(fake_api.MODELS)
    assert [r.query.get("page_token") for r in fake.requests] == [None, "1"]
    assert fake.requests[0].query["endpoint"] == "chat"


# ---- the shared conformance suite -------------------------------------------------------------


def _reply(scenario: Scenario) -> Reply:
    tokens = list(scenario.tokens)
    if scenario.kind == "text":
        return fake_api.text(tokens)
    if scenario.kind == "tool_call":
        return fake_api.tool_call("call_conf", scenario.tool_name, split(scenario.arguments, 4))
    if scenario.kind == "rate_limited":
        return fake_api.http_error(429, "too many requests", retry_after=scenario.retry_after)
    if scenario.kind == "error_after":
        return fake_api.error_mid_stream(tokens[: scenario.k])
    if scenario.kind == "stall_after":
        return fake_api.stall(tokens[: scenario.k])
    if scenario.kind == "long_line":
        return fake_api.long_line()
    raise ValueError(f"no Cohere wire form for {scenario.kind}")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = new_client_session()
    yield s
    await s.close()


@pytest.mark.parametrize("check", CHECKS_WITHOUT_QUOTA, ids=lambda c: c.__name__)
async def test_conformance(check: Check, fake: FakeCohere, session: aiohttp.ClientSession) -> None:
    harness = ScriptedHarness(fake, session, _settings(fake.url), _reply, lambda path: path == "/v2/chat")
    await run_check(check, harness)
