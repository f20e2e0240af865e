"""OpenAI-compatible (Chat Completions) provider against ``FakeOpenAI``."""

from __future__ import annotations

import pytest

from services.llm.providers.base import (
    CompletionRequest,
    Done,
    ImagePart,
    Message,
    ReasoningOptions,
    Role,
    StopReason,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    Usage,
)
from services.llm.providers.openai_chat import ChatCompletionsProvider
from services.llm.providers.openai_responses import ResponsesProvider
from services.llm.streaming import complete
from tests.fakes.openai_script import FakeResponse, FakeToolCall
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check, text_of
from tests.unit.llm.provider_support import OPENAI_COMPATIBLE, Upstream

HELLO = (Message.text(Role.SYSTEM, "Be brief."), Message.text(Role.USER, "Hi"))


UPSTREAM = OPENAI_COMPATIBLE


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)


async def test_compatible_service_uses_chat_completions_unless_responses_is_on(upstream):
    assert type(upstream.provider()) is ChatCompletionsProvider
    assert type(upstream.provider(use_responses_api=True)) is ResponsesProvider


async def test_request_body_asks_for_usage_and_carries_messages(upstream, fake):
    request = CompletionRequest(
        messages=(*HELLO, Message(Role.USER, (TextPart("And this?"), ImagePart("image/jpeg", b"\xff\xd8")))),
        max_output_tokens=100,
    )
    await collect(upstream.provider(), request)
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["max_tokens"] == 100
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9g="}},
            ],
        },
    ]
    assert "user" not in sent.body and "reasoning_effort" not in sent.body


async def test_user_id_is_sent_only_when_the_service_allows_it(upstream, fake):
    request = CompletionRequest(messages=HELLO, user_id="user-42")
    await collect(upstream.provider(), request)
    assert "user" not in fake.requests[-1].body
    await collect(upstream.provider(send_user_id=True), request)
    assert fake.requests[-1].body["user"] == "user-42"


async def test_usage_arrives_from_the_include_usage_chunk(upstream):
    events = await collect(upstream.provider())
    assert Usage(input_tokens=11, output_tokens=7, cached_read_tokens=3) in events


async def test_two_tool_calls_are_assembled_by_index(upstream, fake):
    fake.enqueue(
        FakeResponse(
            tool_calls=(
                FakeToolCall("a", '{"x": 1}', id="call_a", chunks=3),
                FakeToolCall("b", '{"y": [1, 2]}', id="call_b", chunks=5),
            )
        )
    )
    events = await collect(upstream.provider())
    assert [e.call for e in events if isinstance(e, ToolCallEvent)] == [
        ToolCall("call_a", "a", '{"x": 1}', {"x": 1}, True),
        ToolCall("call_b", "b", '{"y": [1, 2]}', {"y": [1, 2]}, True),
    ]
    assert events[-1] == Done(StopReason.TOOL_USE)


async def test_tool_history_is_sent_as_assistant_tool_calls_and_tool_messages(upstream, fake):
    request = CompletionRequest(
        messages=(
            Message.text(Role.USER, "Weather?"),
            Message(Role.ASSISTANT, (ToolCall("call_1", "lookup", '{"c": 1}', {"c": 1}),)),
            Message(Role.TOOL, (ToolResult("call_1", "lookup", "sunny"),)),
        )
    )
    await collect(upstream.provider(), request)
    assert fake.requests[-1].body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"c": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]


async def test_reasoning_content_deltas_become_reasoning(upstream, fake):
    fake.enqueue(FakeResponse.with_reasoning("Think hard.", "42"))
    request = CompletionRequest(messages=HELLO, reasoning=ReasoningOptions(enabled=True))
    result = await complete(upstream.provider(), request)
    assert (result.reasoning, result.text) == ("Think hard.", "42")
    assert fake.requests[-1].body["reasoning_effort"] == "medium"


async def test_structured_output_sends_a_json_schema_response_format(upstream, fake):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    fake.enqueue(FakeResponse.text('{"n": 3}', tokens=3))
    result = await complete(upstream.provider(), CompletionRequest(messages=HELLO, json_schema=schema))
    assert result.text == '{"n": 3}'
    assert fake.requests[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("length", StopReason.MAX_TOKENS),
        ("content_filter", StopReason.CONTENT_FILTER),
        ("stop", StopReason.END_TURN),
    ],
)
async def test_finish_reason_maps_to_stop_reason(upstream, fake, finish, stop):
    fake.enqueue(FakeResponse.text("abc", tokens=2, finish=finish))
    events = await collect(upstream.provider())
    assert events[-1] == Done(stop)


async def test_stream_cut_before_finish_is_an_error_after_the_partial_text(upstream, fake):
    fake.enqueue(FakeResponse.truncated_after(2, tokens=4))
    events = await collect(upstream.provider())
    assert len(text_of(events)) > 0
    assert events[-1] == Done(StopReason.ERROR)


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
async def test_an_answer_longer_than_the_output_cap_is_cut_there_as_max_tokens(upstream, fake, responses_api):
    answer = FakeResponse.text("one two three four five six", tokens=6)
    fake.enqueue(answer)
    request = CompletionRequest(messages=HELLO, max_output_tokens=2)
    events = await collect(upstream.provider(use_responses_api=responses_api), request)
    assert text_of(events) == "".join(answer.tokens[:2])
    assert events[-1] == Done(StopReason.MAX_TOKENS)
