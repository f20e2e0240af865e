"""A provider conformance suite, shared by every provider's tests.

Shape: a provider test module gets a *harness* (any object matching ``Harness``; the ``upstream``
fixture of ``provider_support.py`` is one) that wraps its wire-level fake, then runs every check::

    from tests.unit.llm.conformance import CHECKS, run_check

    @pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
    async def test_conformance(check, upstream):
        await run_check(check, upstream)

The harness turns a protocol-neutral ``Scenario`` into whatever its fake scripts, builds the
provider under test against the fake, and reports what the fake saw. Each check states one
behaviour every provider must have, driven through ``services.llm.streaming`` (the engine all
providers run under), so the checks cover the provider and the engine together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Message,
    Provider,
    ProviderError,
    Role,
    StopReason,
    StreamError,
    TextDelta,
    ToolCallEvent,
    ToolSpec,
    Usage,
)
from services.llm.streaming import stream_completion


@dataclass(frozen=True)
class Scenario:
    """What the fake should do for the next request.

    kind: ``text`` (stream ``tokens``), ``tool_call`` (one call ``tool_name`` with raw
    ``arguments`` split across deltas), ``rate_limited`` (HTTP 429 with ``Retry-After:
    retry_after``), ``insufficient_quota`` (HTTP 429 quota body), ``error_after`` (stream ``k``
    tokens then an in-stream error), ``stall_after`` (stream ``k`` tokens then send nothing until
    the client hangs up), ``long_line`` (a never-ending SSE line).
    """

    kind: str
    tokens: tuple[str, ...] = ("Hello", ", ", "wor", "ld", "!")
    tool_name: str = "lookup_weather"
    arguments: str = '{"city": "Lisbon", "unit": "celsius"}'
    retry_after: str = "1"
    k: int = 2


class Harness(Protocol):
    """What a provider test module implements around its fake."""

    secret_field: str  # the setting that holds the credential (``api_key``, an AWS secret, ...)
    secret: str  # its value, which must never leak

    def provider(self, **settings_overrides: Any) -> Provider:
        """The provider under test pointed at the fake (overrides go into ``ServiceSettings``)."""
        ...

    def enqueue(self, scenario: Scenario) -> None:
        """Script the fake's answer to the next request."""
        ...

    @property
    def request_count(self) -> int:
        """Completion requests the fake has received so far."""
        ...

    async def wait_for_disconnect(self, within: float) -> None:
        """Return once the fake saw a client hang up mid-response; TimeoutError after ``within``."""
        ...


Check = Callable[[Harness], Awaitable[None]]

REQUEST = CompletionRequest(messages=(Message.text(Role.USER, "Say hello"),))
TOOL_REQUEST = CompletionRequest(
    messages=(Message.text(Role.USER, "Weather in Lisbon?"),),
    tools=(
        ToolSpec(
            "lookup_weather",
            "Current weather for a city",
            {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
        ),
    ),
)
FAST = {"base_backoff": 0.01, "max_backoff": 2.0}


async def collect(provider: Provider, request: CompletionRequest = REQUEST, **engine: Any) -> list[Event]:
    """Every event ``stream_completion`` yields for ``request``."""
    return [event async for event in stream_completion(provider, request, **{**FAST, **engine})]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def check_plain_stream_yields_text_usage_and_end_turn(h: Harness) -> None:
    scenario = Scenario("text")
    h.enqueue(scenario)
    events = await collect(h.provider())
    # Deltas that reach us in one socket read may be coalesced (providers/coalesce.py): the
    # text and its order are the contract, not how the provider happened to split it.
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "".join(scenario.tokens)
    assert all(deltas) and 1 <= len(deltas) <= len(scenario.tokens)
    assert any(isinstance(e, Usage) and e.input_tokens > 0 and e.output_tokens > 0 for e in events)
    assert events[-1] == Done(StopReason.END_TURN)
    assert sum(isinstance(e, Done) for e in events) == 1


async def check_tool_call_arguments_are_assembled_from_deltas(h: Harness) -> None:
    h.enqueue(Scenario("tool_call"))
    events = await collect(h.provider(), TOOL_REQUEST)
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert len(calls) == 1
    assert calls[0].name == "lookup_weather"
    assert calls[0].valid and calls[0].arguments == {"city": "Lisbon", "unit": "celsius"}
    assert calls[0].id
    assert events[-1] == Done(StopReason.TOOL_USE)


async def check_invalid_tool_arguments_are_marked_invalid(h: Harness) -> None:
    h.enqueue(Scenario("tool_call", arguments='{"city": "Lis'))
    events = await collect(h.provider(), TOOL_REQUEST)
    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert len(calls) == 1
    assert not calls[0].valid and calls[0].arguments is None
    assert calls[0].raw_arguments == '{"city": "Lis'


async def check_rate_limit_is_retried_after_retry_after(h: Harness) -> None:
    before = h.request_count
    h.enqueue(Scenario("rate_limited", retry_after="1"))
    h.enqueue(Scenario("text"))
    started = time.monotonic()
    events = await collect(h.provider())
    assert time.monotonic() - started >= 0.95  # waited Retry-After, not the 10 ms backoff
    assert text_of(events) == "".join(Scenario("text").tokens)
    assert h.request_count - before == 2


async def check_insufficient_quota_is_not_retried(h: Harness) -> None:
    before = h.request_count
    h.enqueue(Scenario("insufficient_quota"))
    with pytest.raises(ProviderError) as caught:
        await collect(h.provider())
    assert not caught.value.retryable
    assert caught.value.error_class == ErrorClass.PROVIDER
    assert "quota" in caught.value.message
    assert h.request_count - before == 1


async def check_error_mid_stream_keeps_partial_text_and_is_not_retried(h: Harness) -> None:
    scenario = Scenario("error_after", k=2)
    before = h.request_count
    h.enqueue(scenario)
    events = await collect(h.provider())
    assert text_of(events) == "".join(scenario.tokens[: scenario.k])
    assert isinstance(events[-2], StreamError)
    assert events[-1] == Done(StopReason.ERROR)
    assert h.request_count - before == 1


async def check_stall_fires_watchdog_and_closes_upstream(h: Harness) -> None:
    scenario = Scenario("stall_after", k=2)
    h.enqueue(scenario)
    events = await collect(h.provider(), stall_timeout=0.3)
    assert text_of(events) == "".join(scenario.tokens[: scenario.k])
    assert isinstance(events[-2], StreamError)
    assert events[-2].error_class == ErrorClass.PROVIDER
    assert "stopped responding for 0.3 s" in events[-2].message
    assert events[-1] == Done(StopReason.ERROR)
    await h.wait_for_disconnect(5.0)


async def check_unknown_model_is_a_caller_error_with_the_provider_message(h: Harness) -> None:
    with pytest.raises(ProviderError) as caught:
        await collect(h.provider(default_model="no-such-model-xyz"))
    assert caught.value.error_class == ErrorClass.CALLER
    assert caught.value.code == "model_not_found"
    assert not caught.value.retryable
    assert h.secret not in caught.value.message


async def check_api_key_never_appears_in_errors_or_logs(h: Harness) -> None:
    with capture_logs() as records:
        with pytest.raises(ProviderError) as caught:
            await collect(h.provider(**{h.secret_field: h.secret + "-wrong"}))
        h.enqueue(Scenario("error_after", k=1))
        events = await collect(h.provider())
    assert not caught.value.retryable
    assert "API key" in caught.value.message
    texts = [caught.value.message, str(caught.value)]
    texts += [e.message for e in events if isinstance(e, StreamError)]
    texts += [r.getMessage() for r in records]
    for text in texts:
        assert h.secret not in text
        assert h.secret[-8:] not in text


async def check_over_long_line_fails_with_bounded_memory(h: Harness) -> None:
    h.enqueue(Scenario("long_line"))
    with pytest.raises(ProviderError) as caught:
        await collect(h.provider())
    assert "longer than" in caught.value.message
    # The fake would send 256 MiB; hanging up proves the parser stopped at its bound.
    await h.wait_for_disconnect(5.0)


CHECKS: list[Check] = [
    check_plain_stream_yields_text_usage_and_end_turn,
    check_tool_call_arguments_are_assembled_from_deltas,
    check_invalid_tool_arguments_are_marked_invalid,
    check_rate_limit_is_retried_after_retry_after,
    check_insufficient_quota_is_not_retried,
    check_error_mid_stream_keeps_partial_text_and_is_not_retried,
    check_stall_fires_watchdog_and_closes_upstream,
    check_unknown_model_is_a_caller_error_with_the_provider_message,
    check_api_key_never_appears_in_errors_or_logs,
    check_over_long_line_fails_with_bounded_memory,
]


async def run_check(check: Check, harness: Harness) -> None:
    """Run one check (a seam for future per-check setup)."""
    await check(harness)


@contextmanager
def capture_logs() -> Iterator[list[logging.LogRecord]]:
    """Every log record emitted anywhere while the block runs, at DEBUG and up."""
    records: list[logging.LogRecord] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = _Collect(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
