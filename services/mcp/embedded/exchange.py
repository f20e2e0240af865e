"""One HTTP exchange run through an ASGI application, without an HTTP server.

The gateway forwards each request of an MCP client over gRPC; this turns it into an ASGI call of
the SDK's Starlette application and the application's answer into a head and body chunks, in the
order the application writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
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


@dataclass(frozen=True)
class ResponseHead:
    """The status and headers of an answer."""

    status: int
    headers: list[tuple[str, str]]


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


def _parts(message: Message) -> tuple[list[ResponseHead | bytes], bool]:
    """What an ASGI message adds to the answer, and whether the answer is complete with it."""
    if message["type"] == "http.response.start":
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
        return [ResponseHead(message["status"], headers)], False
    if message["type"] == "http.response.body":
        chunk = bytes(message.get("body", b""))
        return ([chunk] if chunk else []), not message.get("more_body", False)
    return [], False


async def exchange(app: ASGIApp, request: HttpRequest) -> AsyncIterator[ResponseHead | bytes]:
    """Run ``request`` through ``app``: yields the head, then each non-empty body chunk.

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
    try:
        while not answered and (message := await messages.get()) is not None:
            parts, answered = _parts(message)
            for part in parts:
                yield part
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
