"""The Mattermost MCP server's routes (plugin-api.md, MCP-server group), forwarded to the mcp
service, which serves them: the gateway is the only part of the cluster reachable from outside.

The server authenticates the client's own bearer token and checks Host and Origin itself, so the
gateway forwards these routes unauthenticated and passes on only the headers the protocol uses:
never cookies, so a browser's Mattermost session cannot be ridden into an MCP call.
"""

from __future__ import annotations

from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from aiohttp import web

from services.common.errors import NotFound, UpstreamUnavailable
from services.common.grpc_client import stream
from services.gateway.deps import DEPS
from services.gateway.request_input import check_text

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


@routes.get(f"{PREFIX}/.well-known/oauth-protected-resource")
@routes.route("OPTIONS", f"{PREFIX}/.well-known/oauth-protected-resource")  # browser clients' CORS preflight
@routes.route("*", f"{PREFIX}/mcp")
async def forward(request: web.Request) -> web.StreamResponse:
    """Forward the exchange to the mcp service and stream its answer back as it comes."""
    require_enabled(request)
    body = await request.read()
    headers = [(name, value) for name, value in request.headers.items() if name.lower() in FORWARDED_HEADERS]
    for name, value in headers:
        # aiohttp hands bytes that are not UTF-8 on as lone surrogates, which protobuf refuses.
        check_text(value, name)
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
