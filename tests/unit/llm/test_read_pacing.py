"""Upstream reads paced to StreamComplete's messages (``pacing.py``): an SSE provider's stream
coalesced by a window is read once per message, not once per token, against FakeOpenAI over
loopback HTTP. (What that saves is the benchmark's business.)"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from services.common.http import new_client_session
from services.llm.coalescing import coalesced
from services.llm.providers import create_provider
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Message,
    Role,
    ServiceSettings,
    ServiceType,
    StopReason,
    TextDelta,
)
from services.llm.streaming import stream_completion
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse

REQUEST = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))
ANSWER = "".join(f"w{i} " for i in range(20))
HOUR = 3600.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


class Counted:
    """The engine's events, passed through as they are pulled, with the text deltas counted:
    each is one upstream read's worth of text (deltas of one read are joined)."""

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self.events = events
        self.text_deltas = 0

    async def stream(self) -> AsyncGenerator[Event, None]:
        async for event in self.events:
            self.text_deltas += type(event) is TextDelta
            yield event


async def _messages(fake: FakeOpenAI, reply: FakeResponse, window: float) -> tuple[list[list[Event]], Counted]:
    fake.enqueue(reply)
    settings = ServiceSettings(
        id="paced",
        type=ServiceType.OPENAI_COMPATIBLE,
        api_key=fake.api_key,
        api_url=fake.base_url,
        default_model="gpt-4o",
    )
    async with new_client_session(trust_env=False) as session:
        counted = Counted(stream_completion(create_provider(settings, session), REQUEST))
        messages = [batch async for batch in coalesced(counted.stream(), window=window)]
    return messages, counted


def _text(messages: list[list[Event]]) -> str:
    return "".join(e.text for batch in messages for e in batch if isinstance(e, TextDelta))


async def test_tokens_within_a_window_are_read_in_one_go_not_one_read_per_token(fake: FakeOpenAI) -> None:
    # 20 tokens 10 ms apart: one read each unpaced; paced by a 150 ms window, the first token
    # goes alone and the rest are read when a window is due, in one or two reads.
    reply = FakeResponse.text(ANSWER, tokens=20, token_delay=0.01)
    messages, counted = await _messages(fake, reply, window=0.15)
    assert [type(e) for e in messages[0]] == [TextDelta]  # the first token, alone
    assert _text(messages) == ANSWER
    assert messages[-1][-1] == Done(StopReason.END_TURN)
    assert counted.text_deltas <= 4


async def test_the_end_of_the_response_cuts_a_hold_short(fake: FakeOpenAI) -> None:
    # A window longer than the test: the reader, held after the first message, must still take
    # the rest (and Done) as soon as the response ends, not when the window is due.
    reply = FakeResponse.text(ANSWER, tokens=20, token_delay=0.005)
    messages, counted = await _messages(fake, reply, window=HOUR)
    assert [type(e) for e in messages[0]] == [TextDelta]
    assert _text(messages) == ANSWER
    assert messages[-1][-1] == Done(StopReason.END_TURN)
    assert counted.text_deltas <= 3


async def test_without_a_window_every_read_is_handed_up_as_it_comes(fake: FakeOpenAI) -> None:
    reply = FakeResponse.text(ANSWER, tokens=20, token_delay=0.01)
    messages, counted = await _messages(fake, reply, window=0)
    assert _text(messages) == ANSWER
    assert counted.text_deltas > 4
