"""The remote MCP servers of the plugin configuration (``mcp.servers``), as plain domain values.

Built from the registry's ``PluginConfig`` message whenever it changes; handlers read the current
value and never the message itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.http_guard import parse_allowed_hostnames
from services.common.licensing import Feature, License, is_licensed

DEFAULT_IDLE_TIMEOUT_MINUTES = 30
# A tool the admin has not configured asks before it runs: a remote server's tools are unvetted.
DEFAULT_POLICY = "ask"
REMOTE = "remote"


@dataclass(frozen=True)
class ToolSetting:
    """An admin's ``tool_configs`` entry for one tool of a server."""

    enabled: bool = True
    policy: str = DEFAULT_POLICY


@dataclass(frozen=True)
class RemoteServer:
    """One configured server; ``headers`` and ``client_secret`` are secrets (never logged)."""

    name: str
    base_url: str
    enabled: bool = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    client_id: str = ""
    client_secret: str = field(default="", repr=False)
    tool_settings: Mapping[str, ToolSetting] = field(default_factory=dict)
    # Its tools are also offered to external clients of the Mattermost MCP server.
    expose_external: bool = False

    @property
    def origin(self) -> str:
        """How tools name their server (``server_origin``): its base URL, as the plugin does."""
        return self.base_url

    def tool(self, name: str) -> ToolSetting:
        """The admin's setting for a tool, or the default one."""
        return self.tool_settings.get(name) or ToolSetting()


@dataclass(frozen=True)
class McpConfig:
    """What the mcp service takes from the plugin configuration."""

    servers: tuple[RemoteServer, ...] = ()
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_MINUTES * 60.0
    allowed_upstream_hostnames: frozenset[str] = frozenset()

    def enabled_servers(self) -> tuple[RemoteServer, ...]:
        """The servers whose tools are offered."""
        return tuple(s for s in self.servers if s.enabled)

    def exported_origins(self) -> frozenset[str]:
        """The enabled servers an admin re-exports through the Mattermost MCP server."""
        return frozenset(s.origin for s in self.enabled_servers() if s.expose_external)

    def by_name(self, name: str) -> RemoteServer | None:
        """The server called ``name``, or None."""
        return next((s for s in self.servers if s.name == name), None)

    def by_origin(self, origin: str) -> RemoteServer | None:
        """The server whose tools carry ``origin``, or None."""
        return next((s for s in self.servers if s.origin == origin), None)


def _server(message: Any, licensed: bool) -> RemoteServer:
    return RemoteServer(
        name=message.name,
        base_url=message.base_url,
        # The registry refuses to enable a server without the license; one stored before the
        # license lapsed stays off.
        enabled=message.enabled and licensed,
        headers=dict(message.headers),
        client_id=message.client_id,
        client_secret=message.client_secret,
        tool_settings={t.name: ToolSetting(t.enabled, t.policy or DEFAULT_POLICY) for t in message.tool_configs},
        expose_external=message.expose_external,
    )


def mcp_config_from_plugin_config(config: Any, license: License) -> McpConfig:
    """Read a ``agents.registry.v1.PluginConfig`` message into an ``McpConfig``."""
    licensed = is_licensed(license, Feature.MCP)
    minutes = config.mcp.idle_timeout_minutes
    return McpConfig(
        servers=tuple(_server(s, licensed) for s in config.mcp.servers if s.name),
        idle_timeout_seconds=(minutes if minutes > 0 else DEFAULT_IDLE_TIMEOUT_MINUTES) * 60.0,
        allowed_upstream_hostnames=parse_allowed_hostnames(config.allowed_upstream_hostnames),
    )


class LiveMcpConfig:
    """The current ``McpConfig``, replaced whenever the registry pushes a new plugin config."""

    def __init__(self) -> None:
        self._value = McpConfig()
        self._listeners: list[Callable[[McpConfig, McpConfig], None]] = []

    def current(self) -> McpConfig:
        """The configuration as of the latest change (no servers until the first one arrives)."""
        return self._value

    def on_change(self, listener: Callable[[McpConfig, McpConfig], None]) -> None:
        """Call ``listener(old, new)`` after every change."""
        self._listeners.append(listener)

    def update(self, plugin_config: Any, license: License) -> None:
        """Adopt a new ``PluginConfig`` message."""
        old, self._value = self._value, mcp_config_from_plugin_config(plugin_config, license)
        for listener in self._listeners:
            listener(old, self._value)
