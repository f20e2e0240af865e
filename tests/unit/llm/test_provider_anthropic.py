"""Anthropic provider against a fake Messages API speaking the real SSE wire format."""

from __future__ import annotations

import json
import logging

import pytest

from services.common.errors import ErrorClass, InvalidInput
from services.llm.providers.anthropic import thinking_budget
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    ImagePart,
    Message,
    ProviderError,
    ReasoningDelta,
    ReasoningOptions,
    ReasoningPart,
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
from tests.fakes import anthropic as fake_api
from tests.fakes.anthropic import API_KEY
from tests.unit.llm.conformance import Check, run_check
from tests.unit.llm.provider_support import ANTHROPIC, CHECKS_WITHOUT_QUOTA, HELLO, Upstream, drain, engine

UPSTREAM = ANTHROPIC


async def test_plain_stream_yields_the_tokens_then_usage_and_done(fake, provider):
    fake.enqueue(fake_api.text(["Hel", "lo", " there"]))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    # Tokens that arrive in one socket read come out as one delta (providers/coalesce.py).
    assert coalesce(events) == [
        TextDelta("Hello there"),
        Usage(input_tokens=12, output_tokens=3, cached_read_tokens=3),
        Done(StopReason.END_TURN),
    ]
    sent = fake.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.header("x-api-key") == API_KEY
    assert sent.header("anthropic-version") == "2023-06-01"
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-5"
    assert body["stream"] is True
    assert body["max_tokens"] == 8192
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "thinking" not in body


async def test_tool_call_arguments_are_assembled_from_partial_json(fake, provider):
    fake.enqueue(fake_api.tool_call("toolu_1", "search_posts", ['{"que', 'ry": "rel', 'ease"}']))
    tools = (ToolSpec("search_posts", "Search posts", {"type": "object", "properties": {"query": {}}}),)

    events = await drain(provider.stream(CompletionRequest(messages=HELLO, tools=tools)))

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [ToolCall("toolu_1", "search_posts", '{"query": "release"}', {"query": "release"}, True)]
    assert events[-1] == Done(StopReason.TOOL_USE)
    assert fake.requests[0].json()["tools"] == [
        {"name": "search_posts", "description": "Search posts", "input_schema": tools[0].input_schema}
    ]


async def test_tool_call_with_broken_json_is_flagged_invalid_not_raised(fake, provider):
    fake.enqueue(fake_api.tool_call("toolu_2", "search_posts", ['{"query": "unterminated']))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    (call,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert call.valid is False
    assert call.arguments is None
    assert call.raw_arguments == '{"query": "unterminated'


async def test_thinking_streams_reasoning_with_its_signature_and_sends_a_budget(fake, provider):
    fake.enqueue(fake_api.thinking(["Let me ", "think."], "sig-abc", ["42"]))
    request = CompletionRequest(messages=HELLO, reasoning=ReasoningOptions(enabled=True))

    events = coalesce(await drain(provider.stream(request)))

    assert events[:3] == [
        ReasoningDelta("Let me think."),
        ReasoningDelta("", signature="sig-abc"),
        TextDelta("42"),
    ]
    body = fake.requests[0].json()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["max_tokens"] == 8192


@pytest.mark.parametrize(
    ("requested", "max_tokens", "expected"),
    [
        (0, 8192, (2048, 8192)),  # a quarter of the output limit
        (0, 2000, (1024, 2000)),  # never under the API minimum
        (0, 100_000, (8192, 100_000)),  # the default is capped
        (0, 1024, (1024, 2048)),  # the budget must stay below max_tokens
        (3000, 8192, (3000, 8192)),  # an explicit budget wins
        (10_000, 8192, (8191, 8192)),  # ...but stays below the output limit
    ],
)
def test_thinking_budget_defaults_to_a_clamped_quarter_of_the_output_limit(requested, max_tokens, expected):
    request = CompletionRequest(messages=HELLO, reasoning=ReasoningOptions(enabled=True, budget_tokens=requested))
    assert thinking_budget(request, max_tokens) == expected


async def test_signed_reasoning_and_tool_history_are_replayed_in_anthropic_blocks(fake, provider):
    call = ToolCall("toolu_9", "lookup", '{"id": 7}', {"id": 7})
    history = (
        Message.text(Role.USER, "Find 7"),
        Message(Role.ASSISTANT, (ReasoningPart("I should look", signature="sig-1"), TextPart("Looking."), call)),
        Message(Role.TOOL, (ToolResult("toolu_9", "lookup", "not found", is_error=True),)),
        Message(Role.TOOL, (ToolResult("toolu_9b", "lookup", "ok"),)),
        Message(Role.ASSISTANT, (ReasoningPart("opaque==", redacted=True), ReasoningPart("unsigned"))),
    )

    await drain(provider.stream(CompletionRequest(messages=history, reasoning=ReasoningOptions(enabled=True))))

    messages = fake.requests[0].json()["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should look", "signature": "sig-1"},
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"id": 7}},
        ],
    }
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": "not found", "is_error": True},
            {"type": "tool_result", "tool_use_id": "toolu_9b", "content": "ok"},
        ],
    }
    assert messages[3] == {
        "role": "assistant",
        "content": [{"type": "redacted_thinking", "data": "opaque=="}],
    }


async def test_images_are_sent_as_base64_sources(fake, provider):
    message = Message(Role.USER, (TextPart("What is this?"), ImagePart("image/png", b"\x89PNG")))

    await drain(provider.stream(CompletionRequest(messages=(message,))))

    content = fake.requests[0].json()["messages"][0]["content"]
    assert content[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="},
    }


async def test_structured_output_sends_the_json_schema_as_output_format(fake, provider):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    fake.enqueue(fake_api.text(['{"title"', ': "Hi"}']))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO, json_schema=schema)))

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == '{"title": "Hi"}'
    assert fake.requests[0].json()["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_reasoning_with_structured_output_is_refused_before_any_request(fake, provider):
    request = CompletionRequest(
        messages=HELLO, reasoning=ReasoningOptions(enabled=True), json_schema={"type": "object"}
    )

    with pytest.raises(InvalidInput) as caught:
        await drain(provider.stream(request))

    assert caught.value.error_class is ErrorClass.CALLER
    assert fake.requests == []


async def test_native_web_search_citations_become_annotations_over_the_cited_text(fake, provider):
    fake.enqueue(
        fake_api.web_search("mattermost", "https://mattermost.com/", "Mattermost", "It is a chat app.", " Yes.")
    )

    events = await drain(provider.stream(CompletionRequest(messages=HELLO, native_web_search=True)))

    assert [e for e in events if isinstance(e, Annotation)] == [
        Annotation(url="https://mattermost.com/", title="Mattermost", start_index=0, end_index=17)
    ]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is a chat app. Yes."
    assert not [e for e in events if isinstance(e, ToolCallEvent)]  # the server tool ran at Anthropic
    assert fake.requests[0].json()["tools"] == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]


async def test_rate_limit_before_the_first_token_is_retried_then_succeeds(fake, provider):
    fake.enqueue(fake_api.http_error(429, "rate_limit_error", "slow down", retry_after="0"), fake_api.text(["ok"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert events[-1] == Done(StopReason.END_TURN)
    assert len(fake.requests) == 2


async def test_bad_request_is_raised_as_a_caller_error_without_retry(fake, provider):
    fake.enqueue(fake_api.http_error(400, "invalid_request_error", "messages: field required"))

    with pytest.raises(ProviderError) as caught:
        await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert caught.value.status == 400
    assert caught.value.error_class is ErrorClass.CALLER
    assert "messages: field required" in caught.value.message
    assert len(fake.requests) == 1


async def test_error_event_mid_stream_keeps_partial_text_and_ends_with_stream_error(fake, provider):
    fake.enqueue(fake_api.error_mid_stream(["partial", " answer"]))

    events = coalesce(await drain(engine(provider, CompletionRequest(messages=HELLO))))

    assert events[0] == TextDelta("partial answer")
    error = events[1]
    assert isinstance(error, StreamError)
    assert "Overloaded" in error.message
    assert events[2] == Done(StopReason.ERROR)
    assert len(fake.requests) == 1  # nothing is retried once tokens went out


async def test_stalled_stream_is_ended_by_the_watchdog(fake, provider):
    fake.enqueue(fake_api.stall(["before", " the stall"]))

    events = coalesce(await drain(engine(provider, CompletionRequest(messages=HELLO), stall=0.3)))

    assert events[0] == TextDelta("before the stall")
    assert isinstance(events[1], StreamError) and events[1].retryable
    assert events[2] == Done(StopReason.ERROR)


@pytest.mark.parametrize(
    "reply", [fake_api.malformed(["x"]), fake_api.truncated(["x"])], ids=["malformed", "truncated"]
)
async def test_malformed_or_truncated_stream_ends_with_an_error_after_the_partial_text(fake, provider, reply):
    fake.enqueue(reply)

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("x")
    assert isinstance(events[1], StreamError)
    assert events[-1] == Done(StopReason.ERROR)


async def test_api_key_never_appears_in_errors_or_logs(fake, provider, caplog):
    caplog.set_level(logging.DEBUG)
    leaky = fake_api.http_error(401, "authentication_error", f"invalid x-api-key: {API_KEY}")
    fake.enqueue(leaky, leaky)
    with pytest.raises(ProviderError) as direct:
        await drain(provider.stream(CompletionRequest(messages=HELLO)))
    with pytest.raises(ProviderError) as through_engine:
        await drain(engine(provider, CompletionRequest(messages=HELLO)))

    for exc in (direct.value, through_engine.value):
        assert exc.status == 401
        assert API_KEY not in str(exc) and API_KEY not in exc.message
        assert API_KEY not in repr(exc.__cause__) and API_KEY not in repr(exc.__context__)
    assert API_KEY not in caplog.text


async def test_unreachable_upstream_is_a_retryable_connection_error(fake, provider):
    await fake.close()
    with pytest.raises(ProviderError) as caught:
        await drain(provider.stream(CompletionRequest(messages=HELLO)))
    assert caught.value.retryable and caught.value.status == 0


async def test_list_models_follows_the_cursor_pages(fake, provider):
    assert await provider.list_models() == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert [r.query.get("after_id") for r in fake.requests] == [None, "claude-sonnet-4-5"]


def test_fake_speaks_json_events():
    # Guards the fake itself: every scripted event is one JSON document with the event's type.
    for chunk in fake_api.text(["a"]).chunks:
        head, data = chunk.decode().strip().split("\n")
        assert json.loads(data.removeprefix("data: "))["type"] == head.removeprefix("event: ")


# ---- the shared conformance suite -------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS_WITHOUT_QUOTA, ids=lambda c: c.__name__)
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)
