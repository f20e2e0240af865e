"""The Mattermost MCP server as an ASGI application: the SDK's streamable HTTP transport, bearer
authentication and protected-resource metadata, laid out at the plugin's paths.

The SDK serves every request statelessly (any replica can answer any request), a handshake-era
request in one exchange where its answer allows (``SingleExchanges``), and ``SealedSessions``
gives legacy clients the ``Mcp-Session-Id`` they expect, sealed so that any replica can check it.
Paths are below ``/plugins/mattermost-ai/mcp-server``: ``/mcp`` and
``/.well-known/oauth-protected-resource``, as the plugin serves them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend, RequireAuthMiddleware
from mcp.server.auth.routes import cors_middleware
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import UpstreamUnavailable
from services.mcp.embedded.auth import SCOPES, MattermostTokenVerifier
from services.mcp.embedded.sessions import SessionSealer
from services.mcp.embedded.single import SingleExchanges, buffer_body

logger = logging.getLogger(__name__)

# Where the gateway mounts the server: the plugin's route prefix.
MOUNT = "/plugins/mattermost-ai/mcp-server"
ENDPOINT = "/mcp"
METADATA = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True)
class PublicSite:
    """Where clients reach the server, and which Host and Origin headers they may send."""

    url: str
    allowed_hosts: list[str]
    allowed_origins: list[str]

    @property
    def resource(self) -> str:
        """The server's resource identifier (RFC 8707/9728), the plugin's."""
        return f"{self.url.rstrip('/')}{MOUNT}"

    @property
    def metadata_url(self) -> str:
        """The protected-resource metadata document, named in every 401."""
        return f"{self.resource}{METADATA}"


def _not_found_session() -> Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Session not found"}}
    return JSONResponse(body, status_code=404)


class SealedSessions:
    """Issues a sealed ``Mcp-Session-Id`` with each ``initialize`` answer and admits a request that
    carries one only when it opens, unexpired, to the same user; the stateless transport behind it
    never sees the header. Only POST is served."""

    def __init__(self, app: ASGIApp, sealer: SessionSealer) -> None:
        self._app = app
        self._sealer = sealer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request of an authenticated user."""
        if scope["method"] != "POST":
            # Stateless, the server sends nothing unasked, so it offers no GET stream, and holds
            # nothing a DELETE could end: the spec's 405 for both.
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        user = scope["user"]
        assert isinstance(user, AuthenticatedUser)  # RequireAuthMiddleware runs first
        session_id = Headers(scope=scope).get(MCP_SESSION_ID_HEADER)
        if session_id is None:
            await self._maybe_initialize(scope, receive, send)
            return
        claims = self._sealer.open(session_id)
        if claims is None or claims.user_id != user.access_token.client_id:
            await _not_found_session()(scope, receive, send)
            return
        inner = MutableHeaders(scope={**scope, "headers": list(scope["headers"])})
        del inner[MCP_SESSION_ID_HEADER]
        if claims.protocol_version and MCP_PROTOCOL_VERSION_HEADER not in inner:
            inner[MCP_PROTOCOL_VERSION_HEADER] = claims.protocol_version
        await self._app({**scope, "headers": inner.raw}, receive, _with_session_id(send, session_id))

    async def _maybe_initialize(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, replay = await buffer_body(receive)
        version = _initialize_version(body)
        if version is None:
            await self._app(scope, replay, send)
            return
        user = scope["user"]
        session_id = self._sealer.seal(user.access_token.client_id, version)
        await self._app(scope, replay, _with_session_id(send, session_id))


def _with_session_id(send: Send, session_id: str) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] < 400:
            MutableHeaders(scope=message)[MCP_SESSION_ID_HEADER] = session_id
        await send(message)

    return sending


def _initialize_version(body: bytes) -> str | None:
    """The protocolVersion an ``initialize`` request asks for, or None for any other body."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return None
    params = message.get("params")
    version = params.get("protocolVersion") if isinstance(params, dict) else None
    return version if isinstance(version, str) else ""


class UnavailableAnswers:
    """Answers 503 with Retry-After when Mattermost cannot check the token (not the 500 Starlette
    would send): the client should retry, not re-authenticate."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request; an UpstreamUnavailable before the answer started becomes the 503."""
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, sending)
        except UpstreamUnavailable as err:
            if started:
                raise
            logger.warning("Mattermost unavailable to the MCP server: %s", err.message)
            retry_after = str(max(1, round(err.retry_after or 1)))
            body = {"error": "Mattermost is unavailable; retry in a moment"}
            await JSONResponse(body, status_code=503, headers={"Retry-After": retry_after})(scope, receive, send)


def build_app(
    manager: StreamableHTTPSessionManager, verifier: MattermostTokenVerifier, site: PublicSite, sealer: SessionSealer
) -> Starlette:
    """The server's routes behind bearer authentication; ``manager`` must be running."""
    endpoint = RequireAuthMiddleware(
        SealedSessions(SingleExchanges(manager), sealer), [], AnyHttpUrl(site.metadata_url)
    )
    metadata = ProtectedResourceMetadata(
        resource=AnyHttpUrl(site.resource),
        authorization_servers=[AnyHttpUrl(site.url)],
        scopes_supported=SCOPES,
        resource_name="Mattermost MCP Server",
    )
    return Starlette(
        routes=[
            Route(ENDPOINT, endpoint=endpoint),
            Route(
                METADATA,
                endpoint=cors_middleware(ProtectedResourceMetadataHandler(metadata).handle, ["GET", "OPTIONS"]),
                methods=["GET", "OPTIONS"],
            ),
        ],
        middleware=[
            Middleware(UnavailableAnswers),
            Middleware(
                AuthenticationMiddleware,
                backend=BearerAuthBackend(verifier, resource_server_url=AnyHttpUrl(site.resource)),
            ),
            Middleware(AuthContextMiddleware),
        ],
    )


def transport_security(site: PublicSite) -> TransportSecuritySettings:
    """DNS rebinding protection: only the site's Host and Origin (and those the operator adds)."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=site.allowed_hosts, allowed_origins=site.allowed_origins
    )
