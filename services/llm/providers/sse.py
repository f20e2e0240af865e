"""Server-sent events parsing with bounded memory, shared by every SSE-speaking provider.

Providers feed raw byte chunks from the response body; a line longer than ``max_line_bytes``
(a broken or hostile upstream) raises instead of growing a buffer without limit.

``SSEDecoder`` is the parser itself, synchronous and incremental: one ``feed`` per socket read
returns every event that read completed. The hot path (``http_stream.post_sse_batches``) works on
those per-read batches, which is what lets a provider coalesce deltas that arrived together and
saves one async-generator hop per event.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from services.llm.providers.base import ProviderError

DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real event, far below memory trouble


class SSEEvent(NamedTuple):
    """One dispatched server-sent event: its type, its ``data`` lines joined, and the last ``id``.
    A tuple: one is built per token, and a tuple is the cheapest immutable record to build."""

    event: str  # "" when the event has no ``event:`` field ("message" per the spec)
    data: str
    id: str = ""


class SSEDecoder:
    """Incremental WHATWG event-stream parser (LF, CR or CRLF line ends)."""

    __slots__ = ("_buf", "_data", "_event", "_last_id", "_max_line_bytes")

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max_line_bytes = max_line_bytes
        self._buf = b""
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by ``chunk``, in order; raises ``ProviderError`` for an over-long line."""
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            return self._feed_slow(buf)
        # Fast path for the common LF-only stream: split once, keep the unterminated tail.
        lines = buf.split(b"\n")
        tail = lines.pop()
        self._check_tail(tail)
        self._buf = tail
        out: list[SSEEvent] = []
        data = self._data
        for raw in lines:
            # Nearly every line is "data: {json}": take its value without decoding the name.
            if raw.startswith(b"data:"):
                data.append(raw[6 if raw[5:6] == b" " else 5 :].decode("utf-8", errors="replace"))
            else:
                self._line(raw, out)
        return out

    def close(self) -> list[SSEEvent]:
        """The event left when the stream ended without a final blank line (the spec drops it,
        but real servers do end that way). An unterminated last line is dropped: it may be cut."""
        self._buf = b""
        if not self._data:
            return []
        event = SSEEvent(self._event, "\n".join(self._data), self._last_id)
        self._event, self._data = "", []
        return [event]

    def _feed_slow(self, buf: bytes) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        start = 0
        size = len(buf)
        while start < size:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if cr >= 0 and (lf < 0 or cr < lf):
                if cr == size - 1:
                    break  # wait: a CR at the end may be the first half of CRLF
                end, width = cr, (2 if buf[cr + 1] == 0x0A else 1)
            elif lf >= 0:
                end, width = lf, 1
            else:
                break
            self._line(buf[start:end], out)
            start = end + width
        tail = buf[start:]
        self._check_tail(tail)
        self._buf = tail
        return out

    def _check_tail(self, tail: bytes) -> None:
        if len(tail) > self._max_line_bytes:
            raise ProviderError(f"the provider sent a line longer than {self._max_line_bytes} bytes", retryable=False)

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                out.append(SSEEvent(self._event, "\n".join(self._data), self._last_id))
                self._data.clear()  # in place: ``feed`` holds the list
            self._event = ""
            return
        if raw[0] == 0x3A:  # ":" starts a comment (keep-alives)
            return
        line = raw.decode("utf-8", errors="replace")
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._last_id = value


def event_json(data: str, provider_name: str) -> dict[str, Any]:
    """An event's ``data`` as the JSON object every event of these wire formats is.

    A garbled event raises a retryable ``ProviderError``: before the first token another attempt
    may well get a clean stream.
    """
    try:
        doc = orjson.loads(data)  # one per token: orjson is several times faster than json
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProviderError(f"{provider_name} sent a malformed stream event", retryable=True, code="malformed_event")
    return doc
