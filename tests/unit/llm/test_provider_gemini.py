"""Gemini API provider against a loopback fake speaking streamGenerateContent?alt=sse."""

from __future__ import annotations

import pytest

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ProviderError,
    ReasoningDelta,
    ReasoningEffort,
    ReasoningOptions,
    ReasoningPart,
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
from services.llm.providers.coalesce import coalesce
from services.llm.providers.gemini import GeminiProvider, build_request_body, thinking_config
from services.llm.streaming import stream_completion
from tests.fakes import gemini as fake_api
from tests.unit.llm.provider_support import GEMINI

QUESTION = (Message.text(Role.SYSTEM, "Be brief."), Message.text(Role.USER, "Hi?"))


UPSTREAM = GEMINI


async def _events(provider: GeminiProvider, request: CompletionRequest) -> list[Event]:
    return [e async for e in provider.stream(request)]


def _no_key_anywhere(events: list[Event]) -> None:
    assert fake_api.API_KEY not in repr(events)


async def test_plain_answer_streams_the_text_then_usage_and_done(fake, provider) -> None:
    events = await _events(provider, CompletionRequest(messages=QUESTION))
    # Chunks that arrive in one socket read come out as one delta (providers/coalesce.py).
    assert coalesce([e for e in events if isinstance(e, TextDelta)]) == [TextDelta("Hello from fake Gemini")]
    assert Usage(input_tokens=11, output_tokens=7) in events
    assert events[-1] == Done(StopReason.END_TURN)
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert sent.header("x-goog-api-key") == fake_api.API_KEY
    body = sent.json()
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi?"}]}]
    assert body["generationConfig"]["maxOutputTokens"] == 8192
    assert "thinkingConfig" not in body["generationConfig"]
    _no_key_anywhere(events)


async def test_function_call_streams_signature_then_tool_call_and_tool_use_stop(fake, provider) -> None:
    fake.enqueue(fake_api.function_call("search_posts", {"query": "deploy"}, signature="sig-1"))
    tools = (ToolSpec("search_posts", "Search", {"type": "object", "properties": {"query": {"type": "string"}}}),)
    events = await _events(provider, CompletionRequest(messages=QUESTION, tools=tools))
    assert events[0] == ReasoningDelta("", signature="sig-1")
    call = next(e.call for e in events if isinstance(e, ToolCallEvent))
    assert (call.name, call.arguments, call.valid) == ("search_posts", {"query": "deploy"}, True)
    assert events[-1] == Done(StopReason.TOOL_USE)
    declared = fake.requests[-1].json()["tools"][0]["functionDeclarations"][0]
    assert declared["name"] == "search_posts" and declared["parametersJsonSchema"]["type"] == "object"


async def test_tool_history_replays_signature_and_function_response(fake, provider) -> None:
    history = (
        *QUESTION,
        Message(
            Role.ASSISTANT,
            (ReasoningPart("", signature="sig-1"), ToolCall("gemini_call_x", "lookup", '{"a": 1}', {"a": 1})),
        ),
        Message(Role.TOOL, (ToolResult("gemini_call_x", "lookup", "42"),)),
    )
    await _events(provider, CompletionRequest(messages=history))
    contents = fake.requests[-1].json()["contents"]
    assert contents[1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "lookup", "args": {"a": 1}}, "thoughtSignature": "sig-1"}],
    }
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "lookup", "response": {"content": "42"}}}],
    }


async def test_thoughts_stream_as_reasoning_and_budget_is_sent(fake, provider) -> None:
    fake.enqueue(fake_api.thinking("Considering the question", "Answer."))
    request = CompletionRequest(messages=QUESTION, reasoning=ReasoningOptions(enabled=True, budget_tokens=2000))
    events = await _events(provider, request)
    assert events[:3] == [
        ReasoningDelta("Considering the question"),
        ReasoningDelta("", signature="sig-abc"),
        TextDelta("Answer."),
    ]
    assert Usage(input_tokens=11, output_tokens=37, reasoning_tokens=30) in events
    assert fake.requests[-1].json()["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2000,
        "includeThoughts": True,
    }


@pytest.mark.parametrize(
    ("model", "reasoning", "expected"),
    [
        (
            "gemini-3-flash-preview",
            ReasoningOptions(enabled=True, effort=ReasoningEffort.MEDIUM),
            {"thinkingLevel": "medium"},
        ),
        (
            "gemini-3-pro-preview",
            ReasoningOptions(enabled=True, effort=ReasoningEffort.MEDIUM),
            {"thinkingLevel": "high"},
        ),
        (
            "gemini-3-pro-preview",
            ReasoningOptions(enabled=True, effort=ReasoningEffort.MINIMAL),
            {"thinkingLevel": "low"},
        ),
        (
            "gemini-3.1-pro",
            ReasoningOptions(enabled=True, effort=ReasoningEffort.HIGH, budget_tokens=1500),
            {"thinkingBudget": 1500},
        ),
        (
            "gemini-2.5-flash",
            ReasoningOptions(enabled=True, effort=ReasoningEffort.LOW),
            {"thinkingBudget": 2048},
        ),
        ("gemini-2.5-flash", ReasoningOptions(enabled=False, budget_tokens=1500), None),
    ],
)
def test_reasoning_maps_budget_first_then_effort_by_model_generation(model, reasoning, expected) -> None:
    config = thinking_config(CompletionRequest(messages=QUESTION, reasoning=reasoning), model)
    if expected is None:
        assert config is None
    else:
        assert config == {**expected, "includeThoughts": True}


def test_images_json_schema_and_web_search_are_encoded() -> None:
    request = CompletionRequest(
        messages=(Message(Role.USER, (TextPart("what is this"), ImagePart("image/png", b"\x89PNG"))),),
        json_schema={"type": "object"},
        native_web_search=True,
        max_output_tokens=100,
    )
    body = build_request_body(request, ServiceSettings(id="g", type=ServiceType.GEMINI), "gemini-2.5-flash")
    assert body["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}}
    assert body["generationConfig"] == {
        "maxOutputTokens": 100,
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    assert body["tools"] == [{"googleSearch": {}}]


async def test_search_grounding_becomes_annotations_with_character_offsets(fake, provider) -> None:
    answer = "Café prices rose. Tea fell."
    fake.enqueue(
        fake_api.grounded(
            answer,
            [("https://a.example/1", "A"), ("https://b.example/2", "B"), ("https://c.example/3", "C")],
            [("Café prices rose.", [0, 1]), ("Tea fell.", [1])],
        )
    )
    events = await _events(provider, CompletionRequest(messages=QUESTION, native_web_search=True))
    annotations = [e for e in events if isinstance(e, Annotation)]
    assert annotations == [
        Annotation("https://a.example/1", "A", 0, 17),
        Annotation("https://b.example/2", "B", 0, 17),
        Annotation("https://b.example/2", "B", 18, 27),
        Annotation("https://c.example/3", "C", 0, 0),
    ]
    assert answer[18:27] == "Tea fell."


async def test_rate_limit_then_success_is_retried_by_the_engine(fake, provider) -> None:
    fake.enqueue(fake_api.http_error(429, "Resource exhausted.", google_status="RESOURCE_EXHAUSTED", retry_after="0"))
    before = len(fake.requests)
    events = [
        e
        async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), max_attempts=3, base_backoff=0)
    ]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello from fake Gemini"
    assert events[-1] == Done(StopReason.END_TURN)
    assert len(fake.requests) - before == 2


async def test_stalled_stream_ends_with_a_retryable_error(fake, provider) -> None:
    fake.enqueue(fake_api.stall("partial"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), stall_timeout=0.3)]
    assert events[0] == TextDelta("partial")
    assert isinstance(events[1], StreamError) and events[1].retryable
    assert events[-1] == Done(StopReason.ERROR)


async def test_error_mid_stream_keeps_text_and_ends_in_error(fake, provider) -> None:
    fake.enqueue(fake_api.error_mid_stream("Some"))
    events = [e async for e in stream_completion(provider, CompletionRequest(messages=QUESTION), base_backoff=0)]
    assert events[0] == TextDelta("Some")
    assert isinstance(events[1], StreamError) and "overloaded" in events[1].message
    assert events[-1] == Done(StopReason.ERROR)


async def test_rejected_key_is_not_retried_and_never_echoed(upstream) -> None:
    wrong = "AIzaWrongKey-abcdefghijklmnop"
    with pytest.raises(ProviderError) as info:
        [e async for e in stream_completion(upstream.provider(api_key=wrong), CompletionRequest(messages=QUESTION))]
    assert not info.value.retryable and info.value.status == 403
    assert wrong not in info.value.message and fake_api.API_KEY not in info.value.message


async def test_missing_key_is_an_admin_problem(upstream) -> None:
    provider = upstream.provider(api_key="")
    with pytest.raises(ProviderError) as info:
        await _events(provider, CompletionRequest(messages=QUESTION))
    assert info.value.error_class == ErrorClass.POLICY


async def test_list_models_keeps_generate_content_models(provider) -> None:
    assert await provider.list_models() == list(fake_api.MODELS)


async def test_registry_builds_a_gemini_provider(upstream) -> None:
    assert isinstance(upstream.provider(), GeminiProvider)
