"""Handshake-era requests answered in one exchange, as the SDK answers the 2026-07-28 era.

Stateless, the SDK serves each handshake-era POST (protocol 2025-11-25 and older, with a sealed
session or without) through a transport built for it: memory streams, a message router, a
JSON-RPC dispatcher and a server task, all torn down after the one answer, about a quarter of the
CPU of a ``tools/call``. A request whose answer is one JSON body (a single JSON-RPC request other
than ``initialize``, JSON accepted) needs none of it: the SDK's handler kernel (``serve_one``)
runs it in the request's own task, on a connection born ready at the request's protocol version
as the stateless transport's is, and the answer is framed as that transport frames it. Anything
else (``initialize``, notifications, a malformed body, a refused header, an oversized body) goes
to the SDK's transport, which answers it as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pydantic_core
from mcp.server.connection import Connection
from mcp.server.runner import serve_one
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import MessageMetadata, ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_JSON = "application/json"


async def buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """The request's whole body, and a ``receive`` that hands it on again before what follows it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


@dataclass
class _JsonAnswerContext:
    """The SDK's ``DispatchContext`` for a request answered by one JSON body: as in the stateless
    transport's JSON mode, the server can send the client no request, and nothing but the answer
    reaches the wire (notifications and progress have no room in it)."""

    transport: TransportContext
    request_id: RequestId
    message_metadata: MessageMetadata
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = field(default=False, init=False)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        """Refused: the answer is the only message this exchange carries."""
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        """Dropped, as the transport's JSON mode drops it."""

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Dropped, as the transport's JSON mode drops it."""


class SingleExchanges:
    """The SDK's stateless JSON-mode endpoint for ``manager``, answering what it can in one exchange."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        assert manager.stateless and manager.json_response, "only a stateless JSON-mode server answers in one exchange"
        self._manager = manager
        self._transport = StreamableHTTPASGIApp(manager)
        self._security = TransportSecurityMiddleware(manager.security_settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one POST of an authenticated user."""
        request = Request(scope, receive)
        if not await self._answerable(request):
            await self._transport(scope, receive, send)
            return
        body, replay = await buffer_body(receive)
        message = self._single_request(body)
        if message is None:
            await self._transport(scope, replay, send)
            return
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER, DEFAULT_NEGOTIATED_VERSION)
        # The handlers get the request with its body still to read, as the transport hands it on.
        reply = await self._answer(Request(scope, replay), message, version)
        body = reply.model_dump_json(by_alias=True, exclude_unset=True).encode()
        await Response(body, status_code=200, media_type=_JSON)(scope, replay, send)

    async def _answerable(self, request: Request) -> bool:
        """Whether the headers are those the transport would serve with a JSON answer."""
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return False  # the 2026-07-28 era, or a version the SDK refuses: its own entry
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        has_json, _ = check_accept_headers(request)
        return (
            request.method == "POST"
            and has_json
            and content_type == _JSON
            and await self._security.validate_request(request, is_post=True) is None
        )

    def _single_request(self, body: bytes) -> JSONRPCRequest | None:
        """The body's one JSON-RPC request, or None where the transport must answer."""
        if len(body) > self._manager.max_request_body_size:
            return None
        try:
            message = jsonrpc_message_adapter.validate_python(pydantic_core.from_json(body), by_name=False)
        except (ValueError, ValidationError):
            return None
        if not isinstance(message, JSONRPCRequest) or message.method == "initialize":
            return None
        return message

    async def _answer(self, request: Request, message: JSONRPCRequest, version: str) -> JSONRPCResponse | JSONRPCError:
        dctx = _JsonAnswerContext(
            transport=TransportContext(kind="streamable-http", can_send_request=False),
            request_id=message.id,
            message_metadata=ServerMessageMetadata(request_context=request, can_send_request=False),
        )
        try:
            result = await serve_one(
                self._manager.app,
                dctx,
                message.method,
                message.params,
                connection=Connection.from_envelope(version, None, None),
                lifespan_state=self._manager._lifespan_state,
            )
        except Exception as exc:
            error = handler_exception_to_error_data(exc)
            if error is None:
                # The transport would send the exception's text; it may name an internal address.
                logger.exception("MCP handler for %r failed", message.method)
                error = ErrorData(code=INTERNAL_ERROR, message="Internal server error")
            return JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
        return JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
