"""The streaming hot path's own mechanisms: the re-armed stall watchdog, coalescing of deltas
that arrived in one read, the incremental SSE decoder, and backpressure through batched reads.
(How fast they are is the benchmark's business, not these tests'.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from services.common.errors import ErrorClass
from services.common.http import environment_configures_requests, new_client_session
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Message,
    ProviderError,
    ReasoningDelta,
    Role,
    ServiceSettings,
    ServiceType,
    StopReason,
    StreamError,
    TextDelta,
    Usage,
)
from services.llm.providers.coalesce import coalesce, decode_batches
from services.llm.providers.openai_chat import ChatStreamDecoder
from services.llm.providers.sse import SSEDecoder, SSEEvent
from services.llm.streaming import STALLED, stream_completion

REQUEST = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))


@dataclasses.dataclass
class ScriptedProvider:
    """Yields ``TextDelta``s, waiting on ``gate`` before the ``stall_at``-th one (a silent upstream)."""

    n: int = 5
    stall_at: int = -1
    pulled: int = 0
    gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    first_sent: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    settings: ServiceSettings = dataclasses.field(
        default_factory=lambda: ServiceSettings(id="scripted", type=ServiceType.OPENAI)
    )

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Event]:
        for i in range(self.n):
            if i == self.stall_at:
                await self.gate.wait()
            self.pulled += 1
            self.first_sent.set()
            yield TextDelta(str(i))
        yield Done(StopReason.END_TURN)

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


# ---- the re-armed watchdog ----------------------------------------------------------------------


async def test_the_watchdog_fires_on_a_stall_after_tokens_flowed():
    provider = ScriptedProvider(n=5, stall_at=3)
    events = [e async for e in stream_completion(provider, REQUEST, stall_timeout=0.05)]
    assert events[:3] == [TextDelta("0"), TextDelta("1"), TextDelta("2")]
    assert isinstance(events[3], StreamError) and events[3].code == STALLED
    assert events[3].error_class == ErrorClass.PROVIDER and events[3].retryable
    assert events[4:] == [Done(StopReason.ERROR)]


async def test_a_slow_consumer_is_not_mistaken_for_a_stalled_upstream():
    # The consumer holds each event longer than the stall timeout: that is backpressure, and the
    # timer armed during the previous wait must not cancel the consumer or the next wait.
    provider = ScriptedProvider(n=3)
    stream = stream_completion(provider, REQUEST, stall_timeout=0.05)
    events = []
    async for event in stream:
        events.append(event)
        await asyncio.sleep(0.12)
    assert events == [TextDelta("0"), TextDelta("1"), TextDelta("2"), Done(StopReason.END_TURN)]


async def test_a_stalled_stream_leaves_no_pending_cancellation_on_the_task():
    provider = ScriptedProvider(n=2, stall_at=1)
    events = [e async for e in stream_completion(provider, REQUEST, stall_timeout=0.05)]
    assert events[-1] == Done(StopReason.ERROR)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.1)  # a stray timer would cancel us here


async def test_a_callers_cancellation_is_not_turned_into_a_stall():
    provider = ScriptedProvider(n=2, stall_at=1)

    async def consume() -> list[Event]:
        return [e async for e in stream_completion(provider, REQUEST, stall_timeout=30)]

    task = asyncio.create_task(consume())
    await provider.first_sent.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# ---- coalescing ---------------------------------------------------------------------------------


def test_coalescing_merges_adjacent_text_and_keeps_order_and_content():
    events: list[Event] = [
        ReasoningDelta("think"),
        ReasoningDelta("ing"),
        ReasoningDelta("", signature="sig"),
        TextDelta("Hel"),
        TextDelta("lo"),
        Usage(input_tokens=1, output_tokens=2),
        TextDelta("!"),
        Done(StopReason.END_TURN),
    ]
    assert coalesce(events) == [
        ReasoningDelta("thinking"),
        ReasoningDelta("", signature="sig"),  # signatures travel verbatim, never merged
        TextDelta("Hello"),
        Usage(input_tokens=1, output_tokens=2),
        TextDelta("!"),
        Done(StopReason.END_TURN),
    ]


def _chunk(text: str) -> SSEEvent:
    return SSEEvent("", json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}))


async def _batches(*batches: list[SSEEvent]) -> AsyncGenerator[list[SSEEvent], None]:
    for batch in batches:
        yield batch


async def test_deltas_of_one_read_become_one_event_and_separate_reads_stay_separate():
    finish = SSEEvent("", '{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
    stream = _batches([_chunk("a")], [_chunk("b"), _chunk("c")], [finish, SSEEvent("", "[DONE]")])
    events = [e async for e in decode_batches(stream, ChatStreamDecoder("fake"))]
    assert events == [TextDelta("a"), TextDelta("bc"), Done(StopReason.END_TURN)]


async def test_text_before_an_error_in_the_same_read_is_delivered_before_the_error():
    error = SSEEvent("", '{"error":{"message":"boom","type":"server_error"}}')
    stream = decode_batches(_batches([_chunk("x"), _chunk("y"), error]), ChatStreamDecoder("fake"))
    assert await anext(stream) == TextDelta("xy")
    with pytest.raises(ProviderError):
        await anext(stream)


async def test_batches_are_pulled_only_as_the_consumer_pulls():
    pulled = 0

    async def reads() -> AsyncGenerator[list[SSEEvent], None]:
        nonlocal pulled
        for i in range(100):
            pulled += 1
            yield [_chunk(str(i))]

    stream = decode_batches(reads(), ChatStreamDecoder("fake"))
    for _ in range(3):
        await anext(stream)
    assert pulled == 3  # nothing read ahead: a slow consumer holds the socket, not a buffer
    await stream.aclose()


# ---- the SSE decoder ----------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_the_sse_decoder_handles_every_line_ending_split_anywhere(newline: str):
    raw = f"event: a{newline}data: 1{newline}data: 2{newline}{newline}: keep-alive{newline}data: 3{newline}{newline}"
    wire = raw.encode()
    for cut in range(len(wire) + 1):
        decoder = SSEDecoder()
        events = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:]) + decoder.close()
        assert events == [SSEEvent("a", "1\n2"), SSEEvent("", "3")], cut


def test_the_sse_decoder_keeps_multibyte_text_split_across_reads_and_skips_what_carries_no_data():
    # "é" and "😀" are 2 and 4 bytes: every cut lands once inside each. A comment, an event with
    # no data line, a field without a value and a "data:" without the optional space are legal.
    raw = (": comment\nevent: ping\n\nid: 7\nretry\ndata:caf\xc3\xa9\n\ndata: \xf0\x9f\x98\x80 ok\ndata\n\n").encode(
        "latin-1"
    )
    for cut in range(len(raw) + 1):
        decoder = SSEDecoder()
        events = decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) + decoder.close()
        assert events == [SSEEvent("", "café", "7"), SSEEvent("", "😀 ok\n", "7")], cut


def test_the_sse_decoder_refuses_an_endless_line():
    decoder = SSEDecoder(max_line_bytes=16)
    with pytest.raises(ProviderError, match="longer than 16 bytes"):
        decoder.feed(b"data: " + b"x" * 32)


def test_the_sse_decoder_drops_an_unterminated_last_line():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a":1}\n\ndata: {"cut') == [SSEEvent("", '{"a":1}')]
    assert decoder.close() == []


# ---- sessions -----------------------------------------------------------------------------------


async def test_sessions_trust_the_environment_only_when_it_sets_a_proxy_or_netrc(monkeypatch, tmp_path):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not environment_configures_requests()
    async with new_client_session() as session:
        assert not session.trust_env
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert environment_configures_requests()
    async with new_client_session() as session:
        assert session.trust_env
