"""Settings of the gateway (HTTP in, gRPC out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from services.common.settings import WorkersSettings, load_settings

PREFIX = "AGENTS_GATEWAY_"
# Shortest plugin credential accepted: one a person could guess or type is no proof.
MIN_PLUGIN_SECRET_CHARS = 32


class GatewaySettings(WorkersSettings):
    """The gateway's settings, read from ``AGENTS_GATEWAY_*`` and the shared variables."""

    env_prefix: ClassVar[str] = PREFIX
    listen_fields: ClassVar[tuple[str, str]] = ("http_host", "http_port")

    service_name: str = "gateway"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8700, ge=0, le=65535)
    # trusted_proxy: a Mattermost-side shim signs each request; session: the caller's own
    # Mattermost token is validated against /api/v4/users/me.
    auth_mode: Literal["trusted_proxy", "session"] = "session"
    # HMAC key shared with the Mattermost-side shim (trusted_proxy mode).
    proxy_shared_secret: str = Field(default="", repr=False)
    # Credentials of the plugins that may call the bridge (/bridge/v1) in session mode, issued by
    # the admin: "plugin-id=secret" entries separated by commas or whitespace, each secret at
    # least 32 characters (e.g. `openssl rand -hex 32`). A plugin sends its Mattermost-Plugin-ID
    # and X-Agents-Plugin-Secret; any other bridge request acts as the user of its session token,
    # whatever Mattermost-Plugin-ID it carries. Not used in trusted_proxy mode, where the shim's
    # signature proves the plugin.
    bridge_plugin_secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    # Allowed clock skew between the shim and the gateway.
    proxy_max_skew_seconds: int = Field(default=300, ge=1)
    # How long a validated session token or a user's permissions are trusted without asking again.
    auth_cache_seconds: float = Field(default=30.0, ge=0)
    # How long the ids of a user's DM channels (GET /ai_bots' dmChannelID) are reused. A DM created
    # meanwhile shows up after this; until then the webapp opens it by name, as for a new DM.
    dm_lookup_cache_seconds: float = Field(default=10.0, ge=0)
    # How long the bridge reuses an agent looked up by name. Agent writes through another replica
    # (or straight to the registry) reach this one only when it expires: a deleted agent is
    # served at most this long. Access checks are never cached. 0 asks the registry every time.
    bridge_agent_cache_seconds: float = Field(default=5.0, ge=0, le=30)
    # Largest request body accepted (the plugin's limit for agent payloads).
    max_body_bytes: int = Field(default=512 * 1024, ge=1024)
    # Answer posted events: one WebSocket per agent bot (off for a gateway that serves HTTP only).
    listen_for_posts: bool = True
    # This replica's name in post claims; random when empty.
    replica_id: str = ""
    # Reply posts are patched at most this often while a turn streams (never per token).
    patch_interval_seconds: float = Field(default=0.3, ge=0.05, le=5.0)
    # A claim not renewed for this long is taken over by another replica's sweep.
    claim_lease_seconds: int = Field(default=15, ge=1, le=600)
    # How often a replica looks for claims whose lease expired.
    claim_sweep_seconds: float = Field(default=5.0, gt=0)
    # How often the set of agents (and so of bot sockets) is reloaded from the registry.
    agents_refresh_seconds: float = Field(default=30.0, gt=0)
    # Longest wait between WebSocket reconnect attempts.
    websocket_max_backoff_seconds: float = Field(default=30.0, gt=0)
    # A post whose answer cannot start because a dependency (the llm service, the database) is
    # unavailable is retried with backoff this long; then its author gets an error reply.
    answer_retry_seconds: float = Field(default=60.0, ge=0)
    # Deadline of one streamed turn (Respond, Attach, ToolDecision, ...).
    turn_timeout_seconds: float = Field(default=900.0, gt=0)

    @field_validator("bridge_plugin_secrets", mode="before")
    @classmethod
    def _parse_plugin_secrets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        secrets: dict[str, str] = {}
        for entry in value.replace(",", " ").split():
            plugin_id, _, secret = entry.partition("=")  # the first "=": a secret may hold more
            if not plugin_id or not secret:
                # Not quoting the entry: it may be a secret.
                raise ValueError("each entry must be plugin-id=secret")
            if plugin_id in secrets:
                raise ValueError(f"plugin {plugin_id} is listed twice")
            secrets[plugin_id] = secret
        return secrets

    @field_validator("bridge_plugin_secrets")
    @classmethod
    def _strong_plugin_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for plugin_id, secret in value.items():
            if len(secret) < MIN_PLUGIN_SECRET_CHARS:
                raise ValueError(
                    f"the secret of plugin {plugin_id} must be at least {MIN_PLUGIN_SECRET_CHARS} characters"
                )
        return value

    @model_validator(mode="after")
    def _secret_for_proxy_mode(self) -> GatewaySettings:
        if self.auth_mode == "trusted_proxy" and not self.proxy_shared_secret:
            raise ValueError("proxy_shared_secret is required when auth_mode is trusted_proxy")
        if self.auth_mode == "trusted_proxy" and self.bridge_plugin_secrets:
            raise ValueError(
                "bridge_plugin_secrets is for session mode; in trusted_proxy mode the shim's signature"
                " proves the plugin"
            )
        return self


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> GatewaySettings:
    """The gateway's settings from ``environ`` (default ``os.environ``), ``fixed`` values winning; ``SettingsError``
    names each bad variable."""
    return load_settings(GatewaySettings, PREFIX, environ, **fixed)
