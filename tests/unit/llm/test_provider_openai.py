"""OpenAI (Responses API) provider against ``FakeOpenAI`` speaking the real SSE wire format."""

from __future__ import annotations

import socket

import pytest

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    ImagePart,
    Message,
    ProviderError,
    ReasoningEffort,
    ReasoningOptions,
    ReasoningPart,
    Role,
    StopReason,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    Usage,
)
from services.llm.providers.openai_responses import ResponsesProvider
from services.llm.streaming import complete
from tests.fakes.openai_script import FakeAnnotation, FakeResponse
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check, text_of
from tests.unit.llm.provider_support import OPENAI, Upstream

HELLO = CompletionRequest(messages=(Message.text(Role.SYSTEM, "Be brief."), Message.text(Role.USER, "Hi")))


UPSTREAM = OPENAI


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)


async def test_the_openai_type_always_speaks_the_responses_api(upstream, fake):
    assert isinstance(upstream.provider(), ResponsesProvider)
    await collect(upstream.provider())
    sent = fake.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.headers["Authorization"] == f"Bearer {fake.api_key}"
    assert sent.body["stream"] is True and sent.body["store"] is False
    assert sent.body["model"] == "gpt-5"
    assert sent.body["max_output_tokens"] == 8192
    for absent in ("user", "reasoning", "include", "tools", "text"):
        assert absent not in sent.body


async def test_system_and_user_messages_become_input_items_with_images_as_data_urls(upstream, fake):
    request = CompletionRequest(
        messages=(
            Message.text(Role.SYSTEM, "Be brief."),
            Message(Role.USER, (TextPart("What is this?"), ImagePart("image/png", b"\x89PNG"))),
        )
    )
    await collect(upstream.provider(), request)
    assert fake.requests[-1].body["input"] == [
        {"role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw=="},
            ],
        },
    ]


async def test_user_id_is_sent_only_when_the_service_allows_it(upstream, fake):
    request = CompletionRequest(messages=HELLO.messages, user_id="user-42")
    await collect(upstream.provider(), request)
    assert "user" not in fake.requests[-1].body
    await collect(upstream.provider(send_user_id=True), request)
    assert fake.requests[-1].body["user"] == "user-42"


async def test_organization_header_is_sent_when_configured(upstream, fake):
    await collect(upstream.provider())
    assert "OpenAI-Organization" not in fake.requests[-1].headers
    await collect(upstream.provider(org_id="org-123"))
    assert fake.requests[-1].headers["OpenAI-Organization"] == "org-123"


async def test_reasoning_streams_its_summary_and_round_trips_the_encrypted_content(upstream, fake):
    fake.enqueue(FakeResponse.with_reasoning("Six times seven is 42.", "42"))
    request = CompletionRequest(
        messages=HELLO.messages, reasoning=ReasoningOptions(enabled=True, effort=ReasoningEffort.HIGH)
    )
    result = await complete(upstream.provider(), request, base_backoff=0.01)

    assert result.reasoning == "Six times seven is 42."
    assert result.text == "42"
    assert result.usage == Usage(input_tokens=11, output_tokens=7, cached_read_tokens=3, reasoning_tokens=5)
    sent = fake.requests[-1].body
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}
    assert sent["include"] == ["reasoning.encrypted_content"]

    follow_up = CompletionRequest(
        messages=(
            *HELLO.messages,
            Message(Role.ASSISTANT, (ReasoningPart(result.reasoning, result.reasoning_signature), TextPart("42"))),
            Message.text(Role.USER, "And times two?"),
        )
    )
    await collect(upstream.provider(), follow_up)
    items = fake.requests[-1].body["input"]
    assert items[2] == {
        "type": "reasoning",
        "id": "rs_fake",
        "summary": [{"type": "summary_text", "text": "Six times seven is 42."}],
        "encrypted_content": "gAAAA-fake-encrypted-reasoning",
    }
    assert items[3] == {"role": "assistant", "content": "42"}


async def test_reasoning_from_another_provider_is_not_sent_back(upstream, fake):
    request = CompletionRequest(
        messages=(
            Message.text(Role.USER, "Hi"),
            Message(Role.ASSISTANT, (ReasoningPart("thinking", "anthropic-signature"), TextPart("Hello"))),
        )
    )
    await collect(upstream.provider(), request)
    assert [i.get("type", i.get("role")) for i in fake.requests[-1].body["input"]] == ["user", "assistant"]


async def test_tool_calls_and_results_are_fed_back_as_function_call_items(upstream, fake):
    call = ToolCall("call_1", "lookup_weather", '{"city": "Lisbon"}', {"city": "Lisbon"})
    request = CompletionRequest(
        messages=(
            Message.text(Role.USER, "Weather?"),
            Message(Role.ASSISTANT, (call,)),
            Message(Role.TOOL, (ToolResult("call_1", "lookup_weather", "22 C, sunny"),)),
        )
    )
    await collect(upstream.provider(), request)
    assert fake.requests[-1].body["input"][1:] == [
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup_weather",
            "arguments": '{"city": "Lisbon"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "22 C, sunny"},
    ]


async def test_tool_call_event_carries_the_call_id_not_the_item_id(upstream, fake):
    fake.enqueue(FakeResponse.tool_call("lookup_weather", '{"city": "Porto"}', call_id="call_xyz"))
    events = await collect(upstream.provider())
    (call,) = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert call == ToolCall("call_xyz", "lookup_weather", '{"city": "Porto"}', {"city": "Porto"}, True)


async def test_native_web_search_adds_the_tool_and_citations_become_annotations(upstream, fake):
    fake.enqueue(
        FakeResponse.text(
            "Mattermost 10 is out.",
            annotations=(FakeAnnotation("https://mattermost.com/blog", "Blog", 0, 21),),
        )
    )
    events = await collect(upstream.provider(), CompletionRequest(messages=HELLO.messages, native_web_search=True))
    assert fake.requests[-1].body["tools"] == [{"type": "web_search"}]
    assert Annotation("https://mattermost.com/blog", "Blog", 0, 21) in events


async def test_structured_output_sends_a_json_schema_text_format(upstream, fake):
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    fake.enqueue(FakeResponse.text('{"title": "Release notes"}', tokens=4))
    result = await complete(upstream.provider(), CompletionRequest(messages=HELLO.messages, json_schema=schema))
    assert result.text == '{"title": "Release notes"}'
    assert fake.requests[-1].body["text"] == {
        "format": {"type": "json_schema", "name": "response", "schema": schema, "strict": True}
    }


async def test_incomplete_response_maps_to_max_tokens(upstream, fake):
    fake.enqueue(FakeResponse.text("cut sho", finish="length"))
    events = await collect(upstream.provider())
    assert events[-1] == Done(StopReason.MAX_TOKENS)


async def test_malformed_event_mid_stream_ends_with_an_error_and_keeps_the_text(upstream, fake):
    fake.enqueue(FakeResponse(tokens=("a", "b", "c"), trouble="malformed", after_tokens=2))
    events = await collect(upstream.provider())
    assert text_of(events) == "ab"
    assert events[-1] == Done(StopReason.ERROR)


async def test_connection_refused_is_a_retryable_status_zero_error(upstream, unused_port):
    provider = upstream.provider(api_url=f"http://127.0.0.1:{unused_port}/v1")
    with pytest.raises(ProviderError) as caught:
        await collect(provider, max_attempts=2)
    assert caught.value.status == 0 and caught.value.retryable
    assert caught.value.error_class == ErrorClass.PROVIDER


async def test_list_models_reads_the_models_endpoint(upstream):
    assert "gpt-5" in await upstream.provider().list_models()


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
