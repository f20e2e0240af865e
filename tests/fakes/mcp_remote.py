"""Remote MCP servers for the tests, built with the official SDK and served over streamable HTTP
on a free loopback port, plus one that accepts connections and never answers.

    async with FakeMcpServer("jira") as jira:
        jira.url                      # http://127.0.0.1:<port>/mcp
        jira.methods["initialize"]    # JSON-RPC requests seen, by method
        jira.requests                 # every HTTP request, whatever it was

Tools: ``echo(text)``, ``add(a, b)``, ``big(n)`` (n characters), ``locate(region)`` (its argument
annotated ``x-mcp-header``, so a 2026-07-28 client sends it as ``Mcp-Param-Region`` too), ``fail()``
(a tool error) and ``hang()`` (never returns until the server stops); behind OAuth also ``meet(n)``, which returns
once n calls are inside it at the same time.

Behind OAuth (``oauth=FakeAuthServer``), a request without a token that server issued and still
holds valid is answered 401 with a ``resource_metadata`` challenge (``challenge_metadata``), and
the protected-resource metadata (RFC 9728) is served at its well-known location.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from services.cluster.supervisor import free_port
from tests.fakes.oauth_server import FakeAuthServer
from tests.polling import poll

Scope = dict[str, Any]


class _Counting:
    """ASGI middleware: counts HTTP requests, their methods and the JSON-RPC methods posted."""

    def __init__(self, app: Any, server: FakeMcpServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.server.requests += 1
        self.server.http_methods[scope["method"]] += 1
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.server.headers_seen.append(headers)
        oauth = self.server.oauth
        if oauth is not None and scope["path"] == "/.well-known/oauth-protected-resource/mcp":
            document = {"resource": self.server.url, "authorization_servers": [oauth.url]}
            await _json_response(send, document)
            return
        if oauth is not None and headers.get("authorization", "").removeprefix("Bearer ") not in oauth.valid:
            challenge = f'Bearer resource_metadata="{self.server.challenge_metadata}"'.encode()
            await send({"type": "http.response.start", "status": 401, "headers": [(b"www-authenticate", challenge)]})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.server.bearer and headers.get("authorization") != f"Bearer {self.server.bearer}":
            await send({"type": "http.response.start", "status": 401, "headers": [(b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        for item in payload if isinstance(payload, list) else [payload]:
            if isinstance(item, dict) and "method" in item:
                self.server.methods[item["method"]] += 1
                self.server.messages.append(item)
                if self.server.legacy and item["method"] == "server/discover":
                    await _method_not_found(send, item.get("id"))
                    return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _method_not_found(send: Any, request_id: Any) -> None:
    await _json_response(
        send, {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "Method not found"}}
    )


async def _json_response(send: Any, document: dict[str, Any]) -> None:
    body = json.dumps(document)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body.encode()})


class FakeMcpServer:
    """A plain MCP server (the SDK's ``MCPServer``) on a free port.

    ``legacy``: a 2025-era server, which answers ``server/discover`` with "method not found" so
    that clients fall back to the ``initialize`` handshake and an ``Mcp-Session-Id`` session
    (closed with DELETE); otherwise the SDK's 2026 stateless protocol is spoken. ``bearer``: every
    request without ``Authorization: Bearer <bearer>`` is answered 401.
    """

    def __init__(
        self, name: str = "fake", *, legacy: bool = False, bearer: str = "", oauth: FakeAuthServer | None = None
    ) -> None:
        self.name = name
        self.legacy = legacy
        self.bearer = bearer
        self.oauth = oauth
        self.port = free_port()
        self.challenge_metadata = f"http://127.0.0.1:{self.port}/.well-known/oauth-protected-resource/mcp"
        self.inside_meet = 0
        self.requests = 0
        self.http_methods: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.messages: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.hanging = 0
        self._release = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def handshakes(self) -> int:
        """Sessions the clients opened (``initialize``; ``server/discover`` on a 2026 server)."""
        return self.methods["initialize"] if self.legacy else self.methods["server/discover"]

    def _app(self) -> Any:
        mcp = MCPServer(self.name)

        @mcp.tool(description="Echo the text back.")
        def echo(text: str) -> str:
            return text

        @mcp.tool(description="Add two integers.")
        def add(a: int, b: int) -> int:
            return a + b

        @mcp.tool(description="Returns n characters.")
        def big(n: int) -> str:
            return "x" * n

        @mcp.tool(description="Names the region, which clients mirror into an Mcp-Param-Region header.")
        def locate(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})]) -> str:
            return region

        @mcp.tool(description="Always fails.")
        def fail() -> str:
            raise ToolError("this tool always fails")

        @mcp.tool(description="Never returns while the server runs.")
        async def hang() -> str:
            self.hanging += 1
            await self._release.wait()
            return "released"

        if self.oauth is not None:
            everyone = asyncio.Condition()

            @mcp.tool(description="Returns once n calls are inside it at the same time.")
            async def meet(n: int) -> str:
                async with everyone:
                    self.inside_meet += 1
                    everyone.notify_all()
                    await everyone.wait_for(lambda: self.inside_meet >= n)
                return "met"

        return _Counting(mcp.streamable_http_app(), self)

    async def __aenter__(self) -> FakeMcpServer:
        config = uvicorn.Config(self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        server = self._server
        await poll(lambda: server.started, within=10, interval=0.02, message=f"{self.name} MCP server never started")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._release.set()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            await self._task


class HangingServer:
    """Accepts connections and reads requests, never answers: a remote server that hung."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def __aenter__(self) -> HangingServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
