"""One upstream HTTP attempt for SSE-speaking providers: POST JSON, map failures, yield events.

The response is closed (not returned to the pool) whenever the consumer stops early, so a stalled
or abandoned stream releases its socket and the provider sees the disconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from services.llm.overhead import provider_wait
from services.llm.providers.base import ProviderError
from services.llm.providers.errors import (
    MAX_ERROR_BODY_BYTES,
    provider_error_from_exception,
    provider_error_from_response,
)
from services.llm.providers.sse import DEFAULT_MAX_LINE_BYTES, SSEEvent, iter_sse

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


async def post_sse(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider_name: str,
    secrets: tuple[str, ...] = (),
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncIterator[SSEEvent]:
    """POST ``body`` and yield the SSE events of a 2xx answer; raise ``ProviderError`` otherwise."""
    try:
        with provider_wait():
            resp = await session.post(url, json=body, headers=dict(headers))
    except _CONNECTION_ERRORS as exc:
        # The exception text can carry the URL; log only its type (some providers put keys in URLs).
        logger.warning("request to %s failed: %s", provider_name, type(exc).__name__)
        raise provider_error_from_exception(exc, provider_name) from None
    finished = False
    try:
        if resp.status >= 300:
            error_body = await _read_bounded(resp, MAX_ERROR_BODY_BYTES)
            raise provider_error_from_response(resp.status, resp.headers, error_body, provider_name, secrets=secrets)
        async for event in iter_sse(_body_chunks(resp, provider_name), max_line_bytes=max_line_bytes):
            yield event
        finished = True
    finally:
        if finished:
            resp.release()
        else:
            # Dropping the connection is how an abandoned stream tells the provider to stop
            # generating (and billing); a pooled half-read connection would be unusable anyway.
            resp.close()


async def get_json(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    provider_name: str,
    secrets: tuple[str, ...] = (),
    max_bytes: int = 8 * 1024 * 1024,
) -> Any:
    """GET ``url`` and decode its JSON body (bounded), mapping failures like ``post_sse``."""
    try:
        async with session.get(url, headers=dict(headers)) as resp:
            raw = await _read_bounded(resp, max_bytes)
            if resp.status >= 300:
                raise provider_error_from_response(resp.status, resp.headers, raw, provider_name, secrets=secrets)
    except _CONNECTION_ERRORS as exc:
        logger.warning("request to %s failed: %s", provider_name, type(exc).__name__)
        raise provider_error_from_exception(exc, provider_name) from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ProviderError(f"{provider_name} sent a malformed JSON answer", code="malformed_response") from None


async def _body_chunks(resp: aiohttp.ClientResponse, provider_name: str) -> AsyncIterator[bytes]:
    # Only the awaits on the socket count as provider time; decoding is ours (llm/overhead.py).
    chunks = resp.content.iter_any().__aiter__()
    try:
        while True:
            with provider_wait():
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            yield chunk
    except _CONNECTION_ERRORS as exc:
        logger.warning("stream from %s broke: %s", provider_name, type(exc).__name__)
        raise provider_error_from_exception(exc, provider_name) from None


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    buf = bytearray()
    while len(buf) < limit:
        chunk = await resp.content.read(limit - len(buf))
        if not chunk:
            break
        buf.extend(chunk)
    return bytes(buf)
