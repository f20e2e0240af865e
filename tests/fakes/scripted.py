"""A loopback HTTP server that plays scripted replies and records every request.

Provider fakes build their wire bytes (SSE, AWS event-stream frames) and hand them over as
``Reply`` objects; this module only serves them. A ``stall`` reply sends its chunks and then keeps
the connection open without another byte until the client leaves or the fake is closed, which is
what a hung upstream looks like to the streaming engine.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import leftovers


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    raw_path: str  # as sent, percent-encoding intact (what SigV4 signed)
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    chunks: tuple[bytes, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/event-stream"
    stall: bool = False
    endless: bytes = b""  # after the chunks, repeat this until the client hangs up (or 256 MiB)


_ENDLESS_LIMIT = 256 * 1024 * 1024

Responder = Callable[[RecordedRequest], Reply | None]


class ScriptedServer:
    """Serves queued replies in order; ``fallback`` answers when the queue is empty.

    ``gate`` sees every request first and may answer it instead (an auth check, a model list).
    """

    def __init__(self, fallback: Responder, *, gate: Responder | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply] = deque()
        self._fallback = fallback
        self._gate = gate
        self._released = asyncio.Event()
        self._disconnected = asyncio.Event()
        self.disconnects = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def enqueue(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def drop_script(self) -> None:
        """Forget the queued replies not served yet: the next request gets the fallback."""
        self._script.clear()

    async def wait_for_disconnect(self, within: float = 5.0) -> None:
        """Return once a client hung up mid-response; raise TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            await self._disconnected.wait()

    def _record_disconnect(self) -> None:
        self.disconnects += 1
        self._disconnected.set()

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client hanging up cancels the handler, which is how a stalled or
        # endless reply notices (and records) the disconnect.
        self._runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        leftovers.started(self)
        return self.url

    async def close(self) -> None:
        leftovers.stopped(self)
        self._released.set()  # let stalled handlers finish so the server can shut down
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=await request.read(),
        )
        self.requests.append(recorded)
        reply = self._gate(recorded) if self._gate else None
        if reply is None:
            reply = self._script.popleft() if self._script else self._fallback(recorded)
        if reply is None:
            return web.json_response({"message": "no scripted reply"}, status=500)
        if reply.status != 200:
            return web.Response(
                status=reply.status,
                body=b"".join(reply.chunks),
                headers={"Content-Type": "application/json", **reply.headers},
            )
        response = web.StreamResponse(status=200, headers={"Content-Type": reply.content_type, **reply.headers})
        await response.prepare(request)
        try:
            for chunk in reply.chunks:
                await response.write(chunk)
            sent = 0
            while reply.endless and sent < _ENDLESS_LIMIT:
                await response.write(reply.endless)
                sent += len(reply.endless)
            if reply.stall:
                await self._released.wait()
                return response
        except (asyncio.CancelledError, ConnectionError):
            self._record_disconnect()
            raise
        await response.write_eof()
        return response


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event carrying JSON."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
