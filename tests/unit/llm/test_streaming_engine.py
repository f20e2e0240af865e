"""The streaming engine (retries, stall watchdog, error shaping, backpressure, ``complete``),
driven through real providers against ``FakeOpenAI`` and, for pull accounting, a counting
provider at the ``Provider`` interface."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from services.common.errors import ErrorClass, InvalidInput
from services.common.http import new_client_session
from services.llm.providers import create_provider
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Message,
    Provider,
    ProviderError,
    Role,
    ServiceSettings,
    ServiceType,
    StopReason,
    StreamError,
    TextDelta,
    ToolCall,
    Usage,
)
from services.llm.streaming import complete, stream_completion
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse

REQUEST = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def provider(fake: FakeOpenAI) -> AsyncIterator[Provider]:
    async with new_client_session(trust_env=False) as session:
        settings = ServiceSettings(
            id="engine-test",
            type=ServiceType.OPENAI_COMPATIBLE,
            api_key=fake.api_key,
            api_url=fake.base_url,
            default_model="gpt-4o",
            streaming_timeout_seconds=1,
        )
        yield create_provider(settings, session)


def _completions(fake: FakeOpenAI) -> int:
    return sum(r.path == "/v1/chat/completions" for r in fake.requests)


async def test_retries_stop_after_max_attempts_and_raise(fake, provider):
    unavailable = FakeResponse.http_error(503, {"error": {"message": "overloaded", "type": "server_error"}})
    fake.enqueue(unavailable, unavailable, unavailable, FakeResponse.text())
    with pytest.raises(ProviderError) as caught:
        async for _ in stream_completion(provider, REQUEST, max_attempts=3, base_backoff=0.01):
            pass
    assert caught.value.retryable and caught.value.status == 503
    assert _completions(fake) == 3


async def test_server_errors_are_retried_until_one_succeeds(fake, provider):
    fake.enqueue(FakeResponse.http_error(502), FakeResponse.text("ok", tokens=1))
    result = await complete(provider, REQUEST, base_backoff=0.01)
    assert result.text == "ok"
    assert _completions(fake) == 2


async def test_retry_after_is_capped_by_max_backoff(fake, provider):
    fake.enqueue(FakeResponse.rate_limited("30"), FakeResponse.text("ok", tokens=1))
    started = time.monotonic()
    result = await complete(provider, REQUEST, max_backoff=0.2)
    assert result.text == "ok"
    assert time.monotonic() - started < 5


async def test_stall_before_the_first_token_uses_the_service_timeout_and_hangs_up(fake, provider):
    fake.enqueue(FakeResponse.stalling_after(0))
    events = [e async for e in stream_completion(provider, REQUEST)]
    assert events == [
        StreamError(ErrorClass.PROVIDER, "the model stopped responding for 1 s; try again", retryable=True),
        Done(StopReason.ERROR),
    ]
    await fake.wait_for_disconnect(5.0)
    assert _completions(fake) == 1


async def test_a_consumer_that_stops_early_closes_the_upstream_connection(fake, provider):
    fake.enqueue(FakeResponse.text(tokens=50, token_delay=0.05))
    stream = stream_completion(provider, REQUEST)
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()
    await fake.wait_for_disconnect(5.0)


async def test_complete_gathers_tool_calls_usage_and_stop_reason(fake, provider):
    fake.enqueue(FakeResponse.tool_call("lookup", '{"q": "x"}'))
    result = await complete(provider, REQUEST)
    assert result.tool_calls == [ToolCall("call_abc123", "lookup", '{"q": "x"}', {"q": "x"}, True)]
    assert result.usage == Usage(input_tokens=11, output_tokens=7, cached_read_tokens=3)
    assert result.stop_reason == StopReason.TOOL_USE
    assert result.error is None


async def test_complete_keeps_partial_text_and_reports_a_mid_stream_failure(fake, provider):
    fake.enqueue(FakeResponse(tokens=("par", "tial", "!"), trouble="error", after_tokens=2))
    result = await complete(provider, REQUEST)
    assert result.text == "partial"
    assert result.stop_reason == StopReason.ERROR
    assert result.error is not None and "failed while answering" in result.error.message


# ---- pull accounting at the Provider interface -------------------------------------------------


@dataclasses.dataclass
class CountingProvider:
    """Yields ``n`` text events, counting how many the engine pulled."""

    n: int = 100
    pulled: int = 0
    settings: ServiceSettings = dataclasses.field(
        default_factory=lambda: ServiceSettings(id="count", type=ServiceType.OPENAI)
    )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Event]:
        for i in range(self.n):
            self.pulled += 1
            yield TextDelta(str(i))

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


async def test_engine_pulls_from_the_provider_only_as_its_consumer_pulls():
    provider = CountingProvider()
    stream = stream_completion(provider, REQUEST)
    for _ in range(3):
        await anext(stream)
    assert provider.pulled == 3
    await stream.aclose()


async def test_a_provider_that_forgets_done_still_ends_with_one():
    events = [e async for e in stream_completion(CountingProvider(n=2), REQUEST)]
    assert events == [TextDelta("0"), TextDelta("1"), Done(StopReason.END_TURN)]


async def test_the_factory_refuses_an_unknown_service_type():
    settings = ServiceSettings(id="x", type="no-such-type")  # type: ignore[arg-type]
    async with new_client_session(trust_env=False) as session:
        with pytest.raises(InvalidInput, match="service type no-such-type is not supported"):
            create_provider(settings, session)
