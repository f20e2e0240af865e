"""One HTTP exchange run through an ASGI application, without an HTTP server.

The gateway forwards each request of an MCP client over gRPC; this turns it into an ASGI call of
the SDK's Starlette application and the application's answer into a head and body chunks, in the
order the application writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpRequest:
    """A request as the client sent it; ``path`` is below the MCP server's prefix."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    # The caller takes a non-stream's body with its head (one part); otherwise the head comes alone.
    head_with_body: bool = False


@dataclass(frozen=True)
class ResponseHead:
    """The status and headers of an answer, with the body's first bytes when they came with it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    @property
    def streams(self) -> bool:
        """Whether the answer is an SSE stream, whose head goes out before any event."""
        return any(k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in self.headers)


def _scope(request: HttpRequest) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.upper(),
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "query_string": request.query.encode(),
        "root_path": "",
        "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers],
        "client": None,
        "server": None,
        "state": {},
    }


def _parts(
    message: Message, held: ResponseHead | None, head_with_body: bool
) -> tuple[list[ResponseHead | bytes], ResponseHead | None, bool]:
    """What an ASGI message adds to the answer, the head still held back, and whether the answer
    is complete. With ``head_with_body``, a non-stream's head waits for the first body message and
    carries its bytes."""
    if message["type"] == "http.response.start":
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        head = ResponseHead(message["status"], headers)
        return ([], head, False) if head_with_body and not head.streams else ([head], None, False)
    if message["type"] != "http.response.body":
        return [], held, False
    chunk = bytes(message.get("body", b""))
    complete = not message.get("more_body", False)
    if held is not None:
        return [dataclasses.replace(held, body=chunk)], None, complete
    return ([chunk] if chunk else []), None, complete


async def exchange(app: ASGIApp, request: HttpRequest) -> AsyncIterator[ResponseHead | bytes]:
    """Run ``request`` through ``app``: yields the head, then each non-empty body chunk.

    With ``request.head_with_body``, the head of an answer that is not a stream waits for the
    first body message and carries its bytes (a JSON answer is then one part); an SSE stream's head
    goes out at once.
    If the caller stops iterating (the client went away), the application sees a disconnect and
    is cancelled; an exception the application raises before answering propagates.
    """
    messages: asyncio.Queue[Message | None] = asyncio.Queue()
    gone = asyncio.Event()
    body_sent = False

    async def receive() -> Message:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def run() -> None:
        try:
            await app(_scope(request), receive, send)
        finally:
            messages.put_nowait(None)

    task = asyncio.create_task(run())
    answered = False
    held: ResponseHead | None = None
    try:
        while not answered and (message := await messages.get()) is not None:
            parts, held, answered = _parts(message, held, request.head_with_body)
            for part in parts:
                yield part
        if held is not None:  # the application ended without a body message
            yield held
        await task
    except Exception:
        if not answered:
            raise
        # The client has its whole answer; what failed after it is the server's to log.
        logger.exception("the MCP server failed after answering")
    finally:
        gone.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
