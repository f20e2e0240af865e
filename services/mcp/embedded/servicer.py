"""``agents.mcp.v1.EmbeddedServer``: HTTP exchanges of the Mattermost MCP server over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from agents.mcp.v1 import embedded_server_pb2_grpc as embedded_server_pb2_grpc
from starlette.types import ASGIApp

from services.common.errors import InvalidInput
from services.mcp.embedded.app import ENDPOINT, METADATA
from services.mcp.embedded.exchange import HttpRequest, ResponseHead, exchange


class EmbeddedServerServicer(embedded_server_pb2_grpc.EmbeddedServerServicer):
    """Runs each forwarded request through the server's ASGI app and streams its answer back."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def ServeHttp(
        self,
        request: embedded_server_pb2.ServeHttpRequest,
        context: grpc.aio.ServicerContext[embedded_server_pb2.ServeHttpRequest, embedded_server_pb2.ServeHttpResponse],
    ) -> AsyncIterator[embedded_server_pb2.ServeHttpResponse]:
        """The answer's head, then its body chunks."""
        if request.path not in (ENDPOINT, METADATA):
            raise InvalidInput(f"no MCP server route {request.path!r}", field="path")
        forwarded = HttpRequest(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=[(h.name, h.value) for h in request.headers],
            body=request.body,
            head_with_body=request.head_with_body,
        )
        async for part in exchange(self._app, forwarded):
            if isinstance(part, ResponseHead):
                head = embedded_server_pb2.HttpResponseHead(
                    status=part.status,
                    headers=[embedded_server_pb2.HttpHeader(name=n, value=v) for n, v in part.headers],
                    body=part.body,
                )
                yield embedded_server_pb2.ServeHttpResponse(head=head)
            else:
                yield embedded_server_pb2.ServeHttpResponse(body_chunk=part)
