"""Bedrock provider against a fake ConverseStream speaking AWS event-stream frames and checking SigV4."""

from __future__ import annotations

import logging

import pytest

from services.llm.providers.base import (
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
from tests.fakes import bedrock as fake_api
from tests.fakes.bedrock import ACCESS_KEY_ID, MODEL_ID, SECRET_ACCESS_KEY
from tests.unit.llm.conformance import Check, run_check
from tests.unit.llm.provider_support import BEDROCK, CHECKS_WITHOUT_QUOTA, HELLO, Upstream, drain, engine

UPSTREAM = BEDROCK


async def test_plain_stream_is_signed_and_decoded_token_by_token(fake, provider):
    fake.enqueue(fake_api.text(["Hel", "lo", " there"]))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" there"),
        Usage(input_tokens=11, output_tokens=3, cached_read_tokens=2),
        Done(StopReason.END_TURN),
    ]
    sent = fake.requests[0]
    # The model id's ":" is percent-encoded in the path, and the signature covered that exact path.
    assert sent.raw_path == "/model/anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse-stream"
    assert sent.header("Authorization").startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    body = sent.json()
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 8192}
    assert "additionalModelRequestFields" not in body


async def test_frames_split_across_network_reads_are_reassembled(fake, provider):
    fake.enqueue(fake_api.split_frames(fake_api.text(["a", "b", "c"]), size=7))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("a"), TextDelta("b"), TextDelta("c")]
    assert events[-1] == Done(StopReason.END_TURN)


async def test_wrong_secret_fails_the_fake_signature_check(upstream):
    provider = upstream.provider(aws_secret_access_key="not-the-secret")
    with pytest.raises(ProviderError) as caught:
        await drain(provider.stream(CompletionRequest(messages=HELLO)))
    assert caught.value.status == 403
    assert "not-the-secret" not in caught.value.message


async def test_default_credential_chain_is_used_when_no_keys_are_configured(upstream, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    provider = upstream.provider(aws_access_key_id="", aws_secret_access_key="")
    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))
    assert events[-1] == Done(StopReason.END_TURN)


async def test_bedrock_api_key_is_sent_as_a_bearer_token(upstream, fake):
    fake.bearer_token = "bedrock-api-key-abcdef"
    provider = upstream.provider(aws_access_key_id="", aws_secret_access_key="", api_key="bedrock-api-key-abcdef")
    events = await drain(provider.stream(CompletionRequest(messages=HELLO)))
    assert events[-1] == Done(StopReason.END_TURN)
    assert fake.requests[0].header("Authorization") == "Bearer bedrock-api-key-abcdef"


async def test_tool_use_input_is_assembled_from_streamed_pieces(fake, provider):
    fake.enqueue(fake_api.tool_call("tooluse_1", "get_weather", ['{"ci', 'ty": "Ber', 'lin"}']))
    tools = (ToolSpec("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}}),)

    events = await drain(provider.stream(CompletionRequest(messages=HELLO, tools=tools)))

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [ToolCall("tooluse_1", "get_weather", '{"city": "Berlin"}', {"city": "Berlin"}, True)]
    assert events[-1] == Done(StopReason.TOOL_USE)
    assert fake.requests[0].json()["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "description": "Weather",
                    "inputSchema": {"json": tools[0].input_schema},
                }
            }
        ]
    }


async def test_reasoning_content_streams_with_signature_and_sends_thinking_for_claude(fake, provider):
    fake.enqueue(fake_api.reasoning(["Hmm, ", "ok."], "sig-xyz", ["Done."]))

    events = await drain(provider.stream(CompletionRequest(messages=HELLO, reasoning=ReasoningOptions(enabled=True))))

    assert events[:4] == [
        ReasoningDelta("Hmm, "),
        ReasoningDelta("ok."),
        ReasoningDelta("", signature="sig-xyz"),
        TextDelta("Done."),
    ]
    body = fake.requests[0].json()
    assert body["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 2048}}


async def test_history_with_reasoning_tools_and_images_uses_converse_blocks(fake, provider):
    history = (
        Message(Role.USER, (TextPart("What is this?"), ImagePart("image/jpeg", b"\xff\xd8"))),
        Message(Role.ASSISTANT, (ReasoningPart("look", signature="s1"), ToolCall("t1", "zoom", "{}", {}))),
        Message(Role.TOOL, (ToolResult("t1", "zoom", "a cat"),)),
        Message(Role.TOOL, (ToolResult("t2", "zoom", "failed", is_error=True),)),
    )

    await drain(provider.stream(CompletionRequest(messages=history)))

    messages = fake.requests[0].json()["messages"]
    assert messages[0]["content"][1] == {"image": {"format": "jpeg", "source": {"bytes": "/9g="}}}
    assert messages[1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "look", "signature": "s1"}}},
        {"toolUse": {"toolUseId": "t1", "name": "zoom", "input": {}}},
    ]
    assert messages[2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "a cat"}], "status": "success"}},
            {"toolResult": {"toolUseId": "t2", "content": [{"text": "failed"}], "status": "error"}},
        ],
    }


async def test_throttling_before_the_first_token_is_retried_then_succeeds(fake, provider):
    fake.enqueue(
        fake_api.http_error(429, "ThrottlingException", "Too many requests", retry_after="0"),
        fake_api.text(["ok"]),
    )

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert len(fake.requests) == 2


async def test_exception_frame_mid_stream_keeps_partial_text_and_ends_with_stream_error(fake, provider):
    fake.enqueue(fake_api.error_mid_stream(["partial"], message="model failed"))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("partial")
    assert isinstance(events[1], StreamError) and "model failed" in events[1].message
    assert events[2] == Done(StopReason.ERROR)
    assert len(fake.requests) == 1


async def test_throttling_exception_frame_before_any_token_is_retried(fake, provider):
    fake.enqueue(fake_api.error_mid_stream([], kind="throttlingException", message="slow"), fake_api.text(["ok"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("ok")]
    assert len(fake.requests) == 2


async def test_stalled_stream_is_ended_by_the_watchdog(fake, provider):
    fake.enqueue(fake_api.stall(["before"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO), stall=0.3))

    assert events[0] == TextDelta("before")
    assert isinstance(events[1], StreamError) and events[1].retryable
    assert events[2] == Done(StopReason.ERROR)


async def test_frame_with_a_bad_checksum_ends_the_stream_with_an_error(fake, provider):
    fake.enqueue(fake_api.malformed(["x"]))

    events = await drain(engine(provider, CompletionRequest(messages=HELLO)))

    assert events[0] == TextDelta("x")
    assert isinstance(events[1], StreamError) and "malformed" in events[1].message
    assert events[-1] == Done(StopReason.ERROR)


async def test_secret_key_never_appears_in_errors_or_logs(fake, provider, caplog):
    caplog.set_level(logging.DEBUG)
    fake.enqueue(fake_api.http_error(400, "ValidationException", f"bad key {SECRET_ACCESS_KEY} {ACCESS_KEY_ID}"))
    with pytest.raises(ProviderError) as caught:
        await drain(engine(provider, CompletionRequest(messages=HELLO)))
    assert caught.value.status == 400
    for secret in (SECRET_ACCESS_KEY, ACCESS_KEY_ID):
        assert secret not in caught.value.message and secret not in str(caught.value)
        assert secret not in caplog.text


async def test_list_models_reads_the_signed_foundation_model_list(fake, provider):
    assert await provider.list_models() == [MODEL_ID, "amazon.nova-pro-v1:0"]
    assert fake.requests[0].query == {"byOutputModality": "TEXT"}


# ---- the shared conformance suite -------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS_WITHOUT_QUOTA, ids=lambda c: c.__name__)
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)
