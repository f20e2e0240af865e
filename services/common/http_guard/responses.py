"""Responses of guarded requests: whole bodies and streams, both cut off at the size cap.

The cap counts bytes after aiohttp has decompressed them, so a small gzip body that inflates to
gigabytes (a "zip bomb") stops at the cap; aiohttp itself inflates in bounded steps, so memory never
holds much more than the cap plus one step.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from services.common.errors import UpstreamUnavailable

from .policy import ResponseTooLarge


@contextlib.contextmanager
def upstream_errors(host: str) -> Iterator[None]:
    """Turn transport failures and timeouts into ``UpstreamUnavailable`` naming only the host."""
    try:
        yield
    except TimeoutError as exc:
        raise UpstreamUnavailable(f"request to {host} timed out", timeout=True) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"request to {host} failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class GuardedResponse:
    """A finished response: status, headers, the whole (decompressed, capped) body, final URL."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: str

    def text(self, encoding: str | None = None) -> str:
        """The body decoded with ``encoding``, else the Content-Type charset, else UTF-8."""
        charset = encoding or _charset(self.headers) or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not (NaN, Infinity and lone
        surrogates included). orjson: an embeddings batch of float vectors parses 8x faster. A
        UTF-8 byte order mark, which some servers put first and orjson refuses, is skipped."""
        body = self.body
        return orjson.loads(body[3:] if body.startswith(codecs.BOM_UTF8) else body)


def _charset(headers: CIMultiDictProxy[str]) -> str | None:
    for param in headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip('"')
    return None


def _too_large(limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"response is larger than the {limit}-byte limit", limit=limit)


def refuse_declared_oversize(response: aiohttp.ClientResponse, limit: int) -> None:
    """Fail before reading when an uncompressed body declares a length past the cap."""
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    length = response.content_length
    if encoding == "identity" and length is not None and length > limit:
        response.close()
        raise _too_large(limit)


class GuardedStream:
    """A response read incrementally (SSE, streamable HTTP); every read counts toward the cap.

    Passing the cap closes the connection and raises ``ResponseTooLarge``; transport failures and
    read timeouts raise ``UpstreamUnavailable``.
    """

    def __init__(self, response: aiohttp.ClientResponse, *, limit: int, host: str) -> None:
        self._response = response
        self._limit = limit
        self._host = host
        self._received = 0
        self.status = response.status
        self.headers = response.headers
        self.url = str(response.url)

    @property
    def received(self) -> int:
        """Decompressed bytes read so far."""
        return self._received

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; the bytes up to the cap are delivered before it raises."""
        with upstream_errors(self._host):
            async for chunk in self._response.content.iter_any():
                room = self._limit - self._received
                if len(chunk) > room:
                    self._response.close()
                    if room > 0:
                        self._received = self._limit
                        yield chunk[:room]
                    raise _too_large(self._limit)
                self._received += len(chunk)
                yield chunk

    async def iter_lines(self) -> AsyncIterator[bytes]:
        r"""Body lines without their ``\n``/``\r\n`` ending; a partial last line is yielded too.

        Lines are cut here rather than with aiohttp's ``readline`` so one endless line still stops
        at the cap.
        """
        pending = b""
        async for chunk in self.iter_chunks():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.removesuffix(b"\r")
        if pending:
            yield pending.removesuffix(b"\r")

    async def read(self) -> bytes:
        """The rest of the body."""
        body = bytearray()
        async for chunk in self.iter_chunks():
            body += chunk
        return bytes(body)


async def read_capped(response: aiohttp.ClientResponse, *, limit: int, host: str) -> bytes:
    """The whole decompressed body, or ``ResponseTooLarge`` once it passes ``limit``."""
    refuse_declared_oversize(response, limit)
    return await GuardedStream(response, limit=limit, host=host).read()
