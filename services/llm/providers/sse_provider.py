"""The shape of every SSE-speaking provider (OpenAI's two APIs, Anthropic, Cohere, Gemini, Vertex).

A provider says what one attempt sends and how its events read (``prepare``: URL, headers, body,
``StreamDecoder``); this base class streams it: ``http_stream.post_sse_batches`` on the caller's
session, decoded and coalesced per socket read by ``coalesce.decode_batches``. No layer is added
per event: the provider's ``stream`` iterates the decoder's generator directly.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.llm.providers.base import CompletionRequest, Event, ServiceSettings
from services.llm.providers.coalesce import StreamDecoder, decode_batches
from services.llm.providers.http_stream import post_sse_batches


@dataclass(frozen=True, slots=True)
class SSERequest:
    """One streaming POST and how to decode its answer; ``secrets`` are redacted from errors."""

    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]
    decoder: StreamDecoder
    secrets: tuple[str, ...]


class SSEProvider:
    """A configured service whose completions stream as server-sent events."""

    provider_name: str  # names the upstream in user-facing errors; each provider sets its own

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession, *, provider_name: str = "") -> None:
        self.settings = settings
        self._session = session
        if provider_name:
            self.provider_name = provider_name

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """What one attempt for ``request`` sends; raise ``InvalidInput`` or ``ProviderError``
        for a request that cannot be sent."""
        raise NotImplementedError

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Event, None]:
        """One streaming attempt; closing it closes the response."""
        call = await self.prepare(request)
        batches = post_sse_batches(
            self._session,
            call.url,
            headers=call.headers,
            body=call.body,
            provider_name=self.provider_name,
            secrets=call.secrets,
        )
        async with aclosing(decode_batches(batches, call.decoder)) as events:
            async for event in events:
                yield event

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""
