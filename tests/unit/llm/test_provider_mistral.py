"""Mistral provider against ``FakeOpenAI`` in its Mistral flavour (strict fields, usage on the
last chunk, whole tool calls, thinking chunks)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from services.common.http import new_client_session
from services.llm.providers.base import (
    CompletionRequest,
    ImagePart,
    Message,
    ReasoningOptions,
    Role,
    ServiceSettings,
    ServiceType,
    TextPart,
    ToolResult,
    Usage,
)
from services.llm.providers.mistral import MistralProvider
from services.llm.streaming import complete
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.unit.llm.conformance import CHECKS, Check, collect, run_check
from tests.unit.llm.openai_harness import OpenAIHarness


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key="mistral-key-0123456789abcdef", flavor="mistral") as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_client_session(trust_env=False) as s:
        yield s


@pytest.fixture
def harness(fake: FakeOpenAI, session: aiohttp.ClientSession) -> OpenAIHarness:
    settings = ServiceSettings(
        id="mistral-test",
        type=ServiceType.MISTRAL,
        api_key=fake.api_key,
        api_url=fake.base_url,
        default_model="mistral-large-latest",
    )
    return OpenAIHarness(fake, session, settings)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
async def test_conformance(check: Check, harness: OpenAIHarness) -> None:
    await run_check(check, harness)


async def test_fields_mistral_rejects_are_never_sent(harness, fake):
    assert isinstance(harness.provider(), MistralProvider)
    request = CompletionRequest(
        messages=(Message.text(Role.USER, "Hi"),), user_id="u1", reasoning=ReasoningOptions(enabled=True)
    )
    await collect(harness.provider(send_user_id=True), request)
    body = fake.requests[-1].body
    assert not {"stream_options", "user", "reasoning_effort"} & set(body)
    assert body["max_tokens"] == 8192


async def test_usage_is_read_from_the_final_chunk(harness):
    events = await collect(harness.provider())
    assert Usage(input_tokens=11, output_tokens=7, cached_read_tokens=3) in events


async def test_thinking_chunks_become_reasoning(harness, fake):
    fake.enqueue(FakeResponse.with_reasoning("Consider the primes.", "7"))
    result = await complete(harness.provider(), CompletionRequest(messages=(Message.text(Role.USER, "Hi"),)))
    assert (result.reasoning, result.text) == ("Consider the primes.", "7")


async def test_tool_results_carry_the_function_name_and_images_are_plain_strings(harness, fake):
    request = CompletionRequest(
        messages=(
            Message(Role.USER, (TextPart("Look"), ImagePart("image/png", b"\x00"))),
            Message(Role.TOOL, (ToolResult("abcDEF123", "lookup", "done"),)),
        )
    )
    await collect(harness.provider(), request)
    messages = fake.requests[-1].body["messages"]
    assert messages[0]["content"][1] == {"type": "image_url", "image_url": "data:image/png;base64,AA=="}
    assert messages[1] == {"role": "tool", "tool_call_id": "abcDEF123", "name": "lookup", "content": "done"}
