"""Cohere provider against a fake v2 Chat API speaking the real SSE wire format."""

from __future__ import annotations

import logging

import pytest

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    ImagePart,
    Message,
    ProviderError,
    ReasoningDelta,
    Role,
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
from services.llm.providers.coalesce import coalesce
from tests.fakes import cohere as fake_api
from tests.fakes.cohere import API_KEY
from tests.unit.llm.conformance import Check, run_check
from tests.unit.llm.provider_support import CHECKS_WITHOUT_QUOTA, COHERE, HELLO, Upstream, drain, engine

UPSTREAM = COHERE


async def test_plain_stream_yields_the_tokens_then_usage_and_done(fake, provider):
    fake.enqueue(fake_api.text(["Hel", "lo"]))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    # Tokens that arrive in one socket read come out as one delta (providers/coalesce.py).
    assert coalesce(events) == [
        TextDelta("Hello"),
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

    events = coalesce(await drain(provider.stream(CompletionRequest(messages=HELLO, tools=tools))))

    assert events[:1] == [ReasoningDelta("I will search.")]
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

    await drain(provider.stream(CompletionRequest(messages=history, json_schema=schema)))

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

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, Annotation)] == [
        Annotation("https://mattermost.com", "Mattermost", 0, len("Mattermost is chat."))
    ]


async def test_rate_limit_before_the_first_token_is_retried_then_succeeds(fake, provider):
    fake.enqueue(fake_api.http_error(429, "too many requests", retry_after="0"), fake_api.text(["ok"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert len(fake.requests) == 2


async def test_unknown_model_is_a_caller_error_without_retry(fake, provider):
    fake.enqueue(fake_api.http_error(404, "model 'nope' not found"))

    with pytest.raises(ProviderError) as caught:
        await drain(engine(provider, CompletionRequest(messages=HELLO, model="nope")))

    assert caught.value.error_class is ErrorClass.CALLER
    assert len(fake.requests) == 1


async def test_error_finish_mid_stream_keeps_partial_text_and_ends_with_stream_error(fake, provider):
    fake.enqueue(fake_api.error_mid_stream(["partial"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("partial")
    assert isinstance(events[1], StreamError)
    assert events[2] == Done(StopReason.ERROR)
    assert len(fake.requests) == 1


async def test_stalled_stream_is_ended_by_the_watchdog(fake, provider):
    fake.enqueue(fake_api.stall(["before"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO), stall=0.3))

    assert events[0] == TextDelta("before")
    assert isinstance(events[1], StreamError) and events[1].retryable
    assert events[2] == Done(StopReason.ERROR)


async def test_malformed_event_ends_the_stream_with_an_error(fake, provider):
    fake.enqueue(fake_api.malformed(["x"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("x")
    assert isinstance(events[1], StreamError)
    assert events[-1] == Done(StopReason.ERROR)


async def test_api_key_never_appears_in_errors_or_logs(fake, provider, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue(fake_api.http_error(401, f"invalid api token {API_KEY}"))
    with pytest.raises(ProviderError) as caught:
        await drain(engine(provider, CompletionRequest(messages=HELLO)))
    assert caught.value.status == 401
    assert API_KEY not in caught.value.message and API_KEY not in str(caught.value)
    assert API_KEY not in caplog.text


async def test_list_models_follows_page_tokens(fake, provider):
    assert await provider.list_models() == list(fake_api.MODELS)
    assert [r.query.get("page_token") for r in fake.requests] == [None, "1"]
    assert fake.requests[0].query["endpoint"] == "chat"


# ---- the shared conformance suite -------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS_WITHOUT_QUOTA, ids=lambda c: c.__name__)
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)
