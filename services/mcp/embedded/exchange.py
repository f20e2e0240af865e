"""One HTTP exchange run through an ASGI application, without an HTTP server.

The gateway forwards each request of an MCP client over gRPC; this turns it into an ASGI call of
the SDK's Starlette application and the application's answer into a head and body chunks, in the
order the application writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message


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
    try:
        while (message := await messages.get()) is not None:
            if message["type"] == "http.response.start":
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
                yield ResponseHead(message["status"], headers)
            elif message["type"] == "http.response.body":
                if chunk := bytes(message.get("body", b"")):
                    yield chunk
                if not message.get("more_body", False):
                    break
        await task
    finally:
        gone.set()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
