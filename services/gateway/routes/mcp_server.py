"""The Mattermost MCP server's routes (plugin-api.md, MCP-server group), forwarded to the mcp
service, which serves them: the gateway is the only part of the cluster reachable from outside.

The server authenticates the client's own bearer token and checks Host and Origin itself, so the
gateway forwards these routes unauthenticated and passes on only the headers the protocol uses:
never cookies, so a browser's Mattermost session cannot be ridden into an MCP call.
"""

from __future__ import annotations

import re

from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from aiohttp import web

from services.common.errors import InvalidInput, NotFound, UpstreamUnavailable
from services.common.grpc_client import stream
from services.gateway.deps import DEPS

routes = web.RouteTableDef()

PREFIX = "/mcp-server"
FORWARDED_HEADERS = frozenset(
    {
        "host",
        "origin",
        "authorization",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        # The 2026-07-28 era routes on these (checked against the body): without them its calls
        # are refused, and clients fall back to the costlier handshake era.
        "mcp-method",
        "mcp-name",
        "last-event-id",
    }
)
# The 2026-07-28 era mirrors a tool's ``x-mcp-header`` arguments into ``Mcp-Param-<name>`` headers
# (SEP-2243), which the server checks against the body: dropped, such a call is refused.
PARAM_PREFIX = "mcp-param-"
# Far above any tool's annotated arguments, far below what would burden the hop to the mcp service.
MAX_PARAM_HEADERS = 32
MAX_PARAM_HEADER_CHARS = 4096
_NOT_HEADER_TEXT = re.compile(r"[^\t\x20-\x7e]")
# Set by aiohttp for the answer it writes; the server's own would describe another framing.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


def require_enabled(request: web.Request) -> None:
    """404, as the plugin answers by not registering the routes, unless the plugin configuration's
    ``mcp.enablePluginServer`` (a licensed switch, off by default) is on."""
    watcher = request.app[DEPS].plugin_config
    if not watcher.ready:
        raise UpstreamUnavailable("the plugin configuration has not been loaded yet")
    if not watcher.current.config.mcp.enable_plugin_server:
        raise NotFound("the Mattermost MCP server is off (the plugin configuration's mcp.enablePluginServer)")


def forwarded_headers(request: web.Request) -> list[tuple[str, str]]:
    """The headers the protocol uses; InvalidInput (400) naming a header that is not ASCII, or
    the limit that too many or too long ``Mcp-Param-*`` headers break."""
    headers = []
    params = 0
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered.startswith(PARAM_PREFIX):
            params += 1
            if params > MAX_PARAM_HEADERS:
                raise InvalidInput(f"more than {MAX_PARAM_HEADERS} Mcp-Param-* headers", field="headers")
            if len(value) > MAX_PARAM_HEADER_CHARS:
                raise InvalidInput(f"header {name} is longer than {MAX_PARAM_HEADER_CHARS} characters", field=name)
        elif lowered not in FORWARDED_HEADERS:
            continue
        if _NOT_HEADER_TEXT.search(value):
            # The protocol base64-wraps any other value; raw, such text broke the forwarding (aiohttp
            # hands on bytes that are not UTF-8 as lone surrogates, which protobuf refuses).
            raise InvalidInput(
                f"header {name} holds characters other than printable ASCII; MCP sends such a value "
                "base64-encoded as =?base64?...?=",
                field=name,
            )
        headers.append((name, value))
    return headers


@routes.get(f"{PREFIX}/.well-known/oauth-protected-resource")
@routes.route("OPTIONS", f"{PREFIX}/.well-known/oauth-protected-resource")  # browser clients' CORS preflight
@routes.route("*", f"{PREFIX}/mcp")
async def forward(request: web.Request) -> web.StreamResponse:
    """Forward the exchange to the mcp service and stream its answer back as it comes."""
    require_enabled(request)
    body = await request.read()
    headers = forwarded_headers(request)
    forwarded = embedded_server_pb2.ServeHttpRequest(
        method=request.method,
        path=request.path.split(PREFIX, 1)[1],
        query=request.query_string,
        headers=[embedded_server_pb2.HttpHeader(name=name, value=value) for name, value in headers],
        body=body,
        head_with_body=True,
    )
    response: web.StreamResponse | None = None
    async for part in stream(request.app[DEPS].backends.mcp_embedded.ServeHttp, forwarded):
        if part.HasField("head"):
            response = web.StreamResponse(status=part.head.status)
            for header in part.head.headers:
                if header.name.lower() not in _HOP_BY_HOP:
                    response.headers.add(header.name, header.value)
            await response.prepare(request)
            if part.head.body:
                await response.write(part.head.body)
        elif response is not None:
            await response.write(part.body_chunk)
    if response is None:
        raise web.HTTPBadGateway(reason="the MCP server sent no answer")
    await response.write_eof()
    return response
