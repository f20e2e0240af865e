"""Server-sent events parsing with bounded memory, shared by every SSE-speaking provider.

Providers feed raw byte chunks from the response body; a line longer than ``max_line_bytes``
(a broken or hostile upstream) raises instead of growing a buffer without limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from services.llm.providers.base import ProviderError

DEFAULT_MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real event, far below memory trouble


@dataclass(frozen=True)
class SSEEvent:
    event: str  # "" when the event has no ``event:`` field ("message" per the spec)
    data: str
    id: str = ""


async def iter_sse(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[SSEEvent]:
    """Yield events from a byte stream per the WHATWG event-stream rules (LF, CR or CRLF)."""
    buf = bytearray()
    event, data_lines, last_id = "", [], ""
    async for chunk in chunks:
        buf.extend(chunk)
        while True:
            nl = _find_newline(buf)
            if nl is None:
                if len(buf) > max_line_bytes:
                    raise ProviderError(f"the provider sent a line longer than {max_line_bytes} bytes", retryable=False)
                break
            end, width = nl
            line = bytes(buf[:end]).decode("utf-8", errors="replace")
            del buf[: end + width]
            if line == "":
                if data_lines:
                    yield SSEEvent(event=event, data="\n".join(data_lines), id=last_id)
                event, data_lines = "", []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data_lines.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                last_id = value
    if data_lines:
        yield SSEEvent(event=event, data="\n".join(data_lines), id=last_id)


def _find_newline(buf: bytearray) -> tuple[int, int] | None:
    """Position and width of the first line terminator, or None when no full line is buffered."""
    lf = buf.find(b"\n")
    cr = buf.find(b"\r")
    if cr >= 0 and (lf < 0 or cr < lf):
        if cr == len(buf) - 1:
            return None  # wait: a CR at the end may be the first half of CRLF
        return (cr, 2) if buf[cr + 1 : cr + 2] == b"\n" else (cr, 1)
    if lf >= 0:
        return (lf, 1)
    return None
