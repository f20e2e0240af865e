"""The Mattermost MCP server inside the mcp service: built from settings, started and stopped
with the process, served to the gateway over ``agents.mcp.v1.EmbeddedServer``."""

from __future__ import annotations

import contextlib
import logging
import os
from importlib.metadata import version
from urllib.parse import urlsplit

import aiohttp
from agents.mcp.v1 import embedded_server_pb2 as embedded_server_pb2
from agents.mcp.v1 import embedded_server_pb2_grpc as embedded_server_pb2_grpc
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from services.common.grpc_server import ServicerBinding
from services.common.http import new_client_session
from services.common.mattermost import MattermostClient
from services.mcp.embedded.app import PublicSite, build_app, transport_security
from services.mcp.embedded.auth import MattermostTokenVerifier
from services.mcp.embedded.exported import ExportedTools
from services.mcp.embedded.servicer import EmbeddedServerServicer
from services.mcp.embedded.sessions import KEY_BYTES, SessionSealer, decode_key
from services.mcp.embedded.tools import build_server
from services.mcp.settings import McpSettings

logger = logging.getLogger(__name__)


def public_site(settings: McpSettings) -> PublicSite:
    """The site clients reach, with the Host and Origin values they may send."""
    url = settings.public_site_url
    parts = urlsplit(url)
    hosts = [parts.netloc, f"{parts.hostname}:*"]
    origins = [f"{parts.scheme}://{parts.netloc}", f"{parts.scheme}://{parts.hostname}:*"]
    hosts += [h.strip() for h in settings.server_allowed_hosts.split(",") if h.strip()]
    origins += [o.strip() for o in settings.server_allowed_origins.split(",") if o.strip()]
    return PublicSite(url, hosts, origins)


class EmbeddedServer:
    """The server's parts: a Mattermost HTTP pool, the SDK's session manager and the app."""

    def __init__(self, settings: McpSettings, exported: ExportedTools) -> None:
        self._settings = settings
        self._http: aiohttp.ClientSession | None = None
        self._stack = contextlib.AsyncExitStack()
        site = public_site(settings)
        if settings.server_session_key:
            key = decode_key(settings.server_session_key)
        else:
            logger.warning("AGENTS_MCP_SERVER_SESSION_KEY is not set: MCP sessions work only on this replica")
            key = os.urandom(KEY_BYTES)
        server = build_server(self._client_for, version("mattermost-agents-cluster"), exported)
        # Stateless: no replica holds anything for a session, so any replica serves any request.
        self._manager = StreamableHTTPSessionManager(
            app=server, json_response=True, stateless=True, security_settings=transport_security(site)
        )
        verifier = MattermostTokenVerifier(self._client_for, site.resource, settings.server_token_cache_seconds)
        sealer = SessionSealer(key, settings.server_session_max_age_seconds)
        self.servicer = EmbeddedServerServicer(build_app(self._manager, verifier, site, sealer))

    def _client_for(self, token: str) -> MattermostClient:
        assert self._http is not None, "start() first"
        return MattermostClient(self._settings.mattermost_url, token, session=self._http)

    def binding(self) -> ServicerBinding:
        """The EmbeddedServer API for the process's gRPC server."""
        return ServicerBinding(
            embedded_server_pb2.DESCRIPTOR.services_by_name["EmbeddedServer"].full_name,
            self.servicer,
            embedded_server_pb2_grpc.add_EmbeddedServerServicer_to_server,
        )

    async def start(self) -> None:
        """Open the Mattermost pool and run the session manager (its task group serves requests)."""
        # Cookies off: each request carries its own user's token, and no answer may leak into another's.
        self._http = new_client_session(cookie_jar=aiohttp.DummyCookieJar())
        self._stack.push_async_callback(self._http.close)
        await self._stack.enter_async_context(self._manager.run())

    async def close(self) -> None:
        """Stop the session manager, then close the pool."""
        await self._stack.aclose()
