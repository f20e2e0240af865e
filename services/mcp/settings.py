"""Settings of the mcp service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from services.common.errors import InvalidInput
from services.common.settings import CommonSettings, load_settings
from services.mcp.embedded.sessions import decode_key
from services.mcp.grants import TokenCipher

PREFIX = "AGENTS_MCP_"


class McpSettings(CommonSettings):
    """``AGENTS_MCP_*``: the port, remote MCP sessions (caps, deadlines, the outbound guard) and the
    Mattermost MCP server."""

    service_name: str = "mcp"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    # Hosts (comma/space separated, ``*.example.com`` wildcards) MCP servers may be on even though
    # they resolve to private, loopback or link-local addresses. A deployment setting, as for the
    # tools service: opening the internal network takes an operator, not an admin in the web UI.
    private_allowed_hostnames: str = ""
    # One remote tool call (or tool listing) may take this long; a hung server is cut there.
    call_timeout_seconds: float = Field(default=8.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    # Text of one tool result handed back for the model; the rest is cut with a note.
    max_output_chars: int = Field(default=50_000, gt=0)
    # Open remote sessions (one per user and server) on this process, and per user.
    max_sessions: int = Field(default=1000, ge=1)
    max_sessions_per_user: int = Field(default=20, ge=1)
    # Replaces the plugin configuration's idleTimeoutMinutes when set (seconds; tests and operators
    # that need a finer grain than minutes).
    idle_timeout_seconds: float | None = Field(default=None, gt=0)
    # The Mattermost MCP server (services/mcp/embedded/), served at site_url: clients must send its
    # Host and Origin, or one listed here (comma-separated; "host:*" allows any port).
    server_allowed_hosts: str = ""
    server_allowed_origins: str = ""
    # URL-safe base64 of 32 bytes sealing session ids; every replica needs the same key. Empty: a
    # key of this process only, so a session survives only on the replica that opened it.
    server_session_key: str = Field(default="", repr=False)
    server_session_max_age_seconds: float = Field(default=24 * 3600.0, gt=0)
    # Reuse of a token Mattermost accepted (0: ask Mattermost on every request).
    server_token_cache_seconds: float = Field(default=30.0, ge=0)

    db_pool_size: int = Field(default=5, ge=1)
    # The key (urlsafe base64 of 32 bytes) that encrypts users' OAuth tokens at rest; ``make up``
    # makes one per data directory. Empty: users cannot connect to servers behind OAuth.
    token_key: str = Field(default="", repr=False)
    # Mattermost's public site URL, where users' browsers and MCP clients reach it: the OAuth
    # redirect and start URLs, and the Mattermost MCP server's resource URL. Empty: mattermost_url.
    site_url: str = ""
    # An OAuth ``state`` is good for this long, once; a token is refreshed this long before it expires.
    oauth_state_ttl_seconds: float = Field(default=600.0, gt=0)
    oauth_refresh_margin_seconds: float = Field(default=60.0, ge=0)

    @property
    def public_site_url(self) -> str:
        """Mattermost's public site URL, without a trailing slash."""
        return (self.site_url or self.mattermost_url).rstrip("/")

    @field_validator("server_session_key")
    @classmethod
    def _key_decodes(cls, value: str) -> str:
        if value:
            decode_key(value)
        return value

    @field_validator("token_key")
    @classmethod
    def _token_key_opens(cls, value: str) -> str:
        # A bad key stops the start (and ``make up``) naming the variable, not the first connect.
        if value:
            try:
                TokenCipher(value)
            except InvalidInput as err:
                raise ValueError(err.message) from None
        return value


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> McpSettings:
    """The mcp service's settings from ``AGENTS_MCP_*`` (and shared ``AGENTS_*``) variables."""
    return load_settings(McpSettings, PREFIX, environ, **fixed)
