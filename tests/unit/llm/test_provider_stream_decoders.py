"""Every SSE provider decodes through the shared path (``providers/coalesce.py``): deltas that one
socket read delivered come out as one event, and a later read's stay apart."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

import pytest

from services.llm.providers.anthropic import MessageStreamDecoder
from services.llm.providers.base import Done, StopReason, TextDelta
from services.llm.providers.coalesce import StreamDecoder, decode_batches
from services.llm.providers.cohere import V2ChatStreamDecoder
from services.llm.providers.gemini_stream import GenerateContentDecoder
from services.llm.providers.sse import SSEDecoder, SSEEvent
from tests.fakes import anthropic as anthropic_api
from tests.fakes import cohere as cohere_api
from tests.fakes import gemini as gemini_api
from tests.fakes.scripted import Reply

WIRES: list[tuple[str, Callable[[], StreamDecoder], Reply]] = [
    ("anthropic", MessageStreamDecoder, anthropic_api.text(["Hel", "lo", " there"])),
    ("cohere", V2ChatStreamDecoder, cohere_api.text(["Hel", "lo", " there"])),
    ("gemini", lambda: GenerateContentDecoder("Gemini"), gemini_api.text("Hel", "lo", " there")),
]


def _reads(reply: Reply, cut: int) -> list[list[SSEEvent]]:
    """The fake's answer as two socket reads, the first ending after its ``cut``-th chunk."""
    decoder = SSEDecoder()
    return [decoder.feed(b"".join(reply.chunks[:cut])), decoder.feed(b"".join(reply.chunks[cut:]))]


async def _batches(reads: list[list[SSEEvent]]) -> AsyncGenerator[list[SSEEvent], None]:
    for batch in reads:
        yield batch


@pytest.mark.parametrize(("decoder", "reply"), [w[1:] for w in WIRES], ids=[w[0] for w in WIRES])
async def test_deltas_of_one_read_become_one_event_and_a_later_read_stays_apart(decoder, reply):
    # The first read ends right after the second token's event; the third token comes later.
    cut = next(i for i, chunk in enumerate(reply.chunks) if b'"lo"' in chunk) + 1
    events = [e async for e in decode_batches(_batches(_reads(reply, cut)), decoder())]
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta("Hello"), TextDelta(" there")]
    assert events[-1] == Done(StopReason.END_TURN)
