"""Mistral provider against ``FakeOpenAI`` in its Mistral flavour (strict fields, usage on the
last chunk, whole tool calls, thinking chunks)."""

from __future__ import annotations

import pytest

from services.llm.providers.base import (
    CompletionRequest,
    ImagePart,
    Message,
    ReasoningOptions,
    Role,
    TextPart,
    ToolResult,
    Usage,
)
from services.llm.providers.mistral import MistralProvider
from services.llm.streaming import complete
from tests.fakes.openai_script import FakeResponse
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check
from tests.unit.llm.provider_support import MISTRAL, Upstream

UPSTREAM = MISTRAL


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, upstream: Upstream) -> None:
    await run_check(check, upstream)


async def test_fields_mistral_rejects_are_never_sent(upstream, fake):
    assert isinstance(upstream.provider(), MistralProvider)
    request = CompletionRequest(
        messages=(Message.text(Role.USER, "Hi"),), user_id="u1", reasoning=ReasoningOptions(enabled=True)
    )
    await collect(upstream.provider(send_user_id=True), request)
    body = fake.requests[-1].body
    assert not {"stream_options", "user", "reasoning_effort"} & set(body)
    assert body["max_tokens"] == 8192


async def test_usage_is_read_from_the_final_chunk(upstream):
    events = await collect(upstream.provider())
    assert Usage(input_tokens=11, output_tokens=7, cached_read_tokens=3) in events


async def test_thinking_chunks_become_reasoning(upstream, fake):
    fake.enqueue(FakeResponse.with_reasoning("Consider the primes.", "7"))
    result = await complete(upstream.provider(), CompletionRequest(messages=(Message.text(Role.USER, "Hi"),)))
    assert (result.reasoning, result.text) == ("Consider the primes.", "7")


async def test_tool_results_carry_the_function_name_and_images_are_plain_strings(upstream, fake):
    request = CompletionRequest(
        messages=(
            Message(Role.USER, (TextPart("Look"), ImagePart("image/png", b"\x00"))),
            Message(Role.TOOL, (ToolResult("abcDEF123", "lookup", "done"),)),
        )
    )
    await collect(upstream.provider(), request)
    messages = fake.requests[-1].body["messages"]
    assert messages[0]["content"][1] == {"type": "image_url", "image_url": "data:image/png;base64,AA=="}
    assert messages[1] == {"role": "tool", "tool_call_id": "abcDEF123", "name": "lookup", "content": "done"}
