"""One upstream HTTP attempt for SSE-speaking providers: POST JSON, map failures, yield events.

The response is closed (not returned to the pool) whenever the consumer stops early, so a stalled
or abandoned stream releases its socket and the provider sees the disconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDict

from services.llm.overhead import current_clock, provider_wait
from services.llm.providers.base import ProviderError
from services.llm.providers.errors import (
    MAX_ERROR_BODY_BYTES,
    provider_error_from_exception,
    provider_error_from_response,
)
from services.llm.providers.sse import SSEDecoder, SSEEvent

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
MAX_JSON_BYTES = 8 * 1024 * 1024  # model lists; far above a real one


async def post_sse_batches(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider_name: str,
    secrets: tuple[str, ...] = (),
) -> AsyncGenerator[list[SSEEvent], None]:
    """POST ``body`` and yield, per socket read, the SSE events it completed (never an empty
    batch) of a 2xx answer; raise ``ProviderError`` otherwise.

    Batches are what the socket already delivered, nothing is read ahead: a consumer that stops
    pulling stops the reads, and TCP pushes back on the provider.
    """
    resp = await _send(session, url, headers=headers, body=body, provider_name=provider_name)
    finished = False
    try:
        if resp.status >= 300:
            error_body = await read_bounded(resp, MAX_ERROR_BODY_BYTES)
            raise provider_error_from_response(resp.status, resp.headers, error_body, provider_name, secrets=secrets)
        decoder = SSEDecoder()
        content = resp.content
        # Only the awaits on the socket count as provider time; decoding is ours (llm/overhead.py).
        clock = current_clock()
        while True:
            since = clock.now() if clock is not None else 0.0
            try:
                chunk = await content.readany()
            except _CONNECTION_ERRORS as exc:
                logger.warning("stream from %s broke: %s", provider_name, type(exc).__name__)
                raise provider_error_from_exception(exc, provider_name) from None
            finally:
                if clock is not None:
                    clock.add_wait(since)
            if not chunk:
                break
            events = decoder.feed(chunk)
            if events:
                yield events
        tail = decoder.close()
        if tail:
            yield tail
        finished = True
    finally:
        # A body the HTTP parser already saw end (the consumer stopped right after the final
        # event) leaves a clean connection: back to the pool, sparing the next call a connect
        # (and, upstream, a TLS handshake). Anything else is dropped: that is how an abandoned
        # stream tells the provider to stop generating (and billing), and a half-read
        # connection would be unusable anyway.
        if finished or resp.content.is_eof():
            resp.release()
        else:
            resp.close()


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider_name: str,
) -> aiohttp.ClientResponse:
    # orjson: the request body is encoded once per call, and prompts with history are large.
    request_headers = CIMultiDict(headers)
    request_headers.setdefault("Content-Type", "application/json")
    try:
        with provider_wait():
            return await session.post(url, data=orjson.dumps(body), headers=request_headers)
    except _CONNECTION_ERRORS as exc:
        # The exception text can carry the URL; log only its type (some providers put keys in URLs).
        logger.warning("request to %s failed: %s", provider_name, type(exc).__name__)
        raise provider_error_from_exception(exc, provider_name) from None


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    provider_name: str,
    secrets: tuple[str, ...] = (),
) -> Any:
    """GET ``url`` and decode its JSON body (bounded), mapping failures like ``post_sse_batches``."""
    try:
        async with session.get(url, headers=dict(headers)) as resp:
            raw = await read_bounded(resp, MAX_JSON_BYTES)
            if resp.status >= 300:
                raise provider_error_from_response(resp.status, resp.headers, raw, provider_name, secrets=secrets)
    except _CONNECTION_ERRORS as exc:
        logger.warning("request to %s failed: %s", provider_name, type(exc).__name__)
        raise provider_error_from_exception(exc, provider_name) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ProviderError(f"{provider_name} sent a malformed JSON answer", code="malformed_response") from None


async def read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to ``limit`` bytes: ``read(n)`` returns what has arrived so far, not n bytes."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = await resp.content.read(limit - len(buf))
        if not chunk:
            break
        buf.extend(chunk)
    return bytes(buf)
