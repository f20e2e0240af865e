"""The part of the plugin configuration the tools service acts on, as plain domain values.

Built from the registry's ``PluginConfig`` message whenever it changes; handlers read the current
value and never the message itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.common.http_guard import parse_allowed_hostnames
from services.common.licensing import License
from services.tools.catalog import ToolFamily, find_tool
from services.tools.policies import ToolPolicy, policy_from_tool_config

DEFAULT_RESULT_LIMIT = 5
BRAVE_API_URL = "https://api.search.brave.com/res/v1/web/search"
GOOGLE_API_URL = "https://www.googleapis.com/customsearch/v1"


@dataclass(frozen=True)
class WebSearchSettings:
    """The ``webSearch`` block: provider, credentials (never logged), limits and denylist."""

    enabled: bool = False
    provider: str = ""
    api_key: str = field(default="", repr=False)
    engine_id: str = ""
    result_limit: int = DEFAULT_RESULT_LIMIT
    api_url: str = ""
    domain_denylist: frozenset[str] = frozenset()

    @property
    def configured(self) -> bool:
        """Enabled with a known provider and its credentials (the plugin's exposure rule)."""
        if not self.enabled or not self.api_key:
            return False
        return self.provider == "brave" or (self.provider == "google" and bool(self.engine_id))

    @property
    def endpoint(self) -> str:
        """The API URL: the admin's override or the provider's default."""
        return self.api_url or (GOOGLE_API_URL if self.provider == "google" else BRAVE_API_URL)


@dataclass(frozen=True)
class ToolsConfig:
    """What the tools service takes from the plugin configuration."""

    web_search: WebSearchSettings = WebSearchSettings()
    allowed_upstream_hostnames: frozenset[str] = frozenset()
    channel_tools_enabled: bool = False
    semantic_search_enabled: bool = False
    # mcp.embeddedServer.tool_configs for the built-in Mattermost tools, by tool name.
    configured_policies: Mapping[str, ToolPolicy] = field(default_factory=dict)


def _limit(value: int) -> int:
    # The admin guide's range is 1-10 with 5 by default; an unset (0) limit means the default.
    return DEFAULT_RESULT_LIMIT if value <= 0 else min(value, 10)


def _domains(values: Any) -> frozenset[str]:
    # The console stores a comma-separated string in one entry; accept both shapes.
    out: set[str] = set()
    for value in values:
        out |= {d.strip().lower().removeprefix("*.").rstrip(".") for d in str(value).split(",") if d.strip()}
    return frozenset(out)


def configured_policies(tool_configs: Any) -> dict[str, ToolPolicy]:
    """The embedded server's ``tool_configs`` entries that name a built-in Mattermost tool.

    The built-in Mattermost tools stand in for the plugin's embedded server, so its per-tool
    settings are theirs; entries for other tools (or web tools, which the plugin never lists there)
    are ignored. A repeated name keeps its last entry, as a JSON object decoded by key would.
    """
    out: dict[str, ToolPolicy] = {}
    for entry in tool_configs:
        spec = find_tool(entry.name.strip())
        if spec is not None and spec.family is ToolFamily.MATTERMOST:
            out[spec.name] = policy_from_tool_config(spec.name, entry.policy, entry.enabled)
    return out


def tools_config_from_plugin_config(config: Any, license: License = License.NONE) -> ToolsConfig:
    """Read a ``agents.registry.v1.PluginConfig`` message into a ``ToolsConfig``."""
    ws = config.web_search
    provider = ws.provider.lower()
    if provider == "google":
        web = WebSearchSettings(
            enabled=ws.enabled,
            provider=provider,
            api_key=ws.google.api_key,
            engine_id=ws.google.search_engine_id,
            result_limit=_limit(ws.google.result_limit),
            api_url=ws.google.api_url,
            domain_denylist=_domains(ws.domain_denylist),
        )
    else:
        web = WebSearchSettings(
            enabled=ws.enabled,
            provider=provider,
            api_key=ws.brave.api_key,
            result_limit=_limit(ws.brave.result_limit),
            api_url=ws.brave.api_url,
            domain_denylist=_domains(ws.domain_denylist),
        )
    return ToolsConfig(
        web_search=web,
        allowed_upstream_hostnames=parse_allowed_hostnames(config.allowed_upstream_hostnames),
        channel_tools_enabled=config.enable_channel_mention_tool_calling,
        # Semantic search needs a license (admin guide's table); without one it stays keyword-only.
        semantic_search_enabled=bool(config.embedding_search_config.type) and license >= License.ENTRY,
        configured_policies=configured_policies(config.mcp.embedded_server.tool_configs),
    )


class LiveToolsConfig:
    """The current ``ToolsConfig``, replaced whenever the registry pushes a new plugin config."""

    def __init__(self) -> None:
        self._value = ToolsConfig()

    def current(self) -> ToolsConfig:
        """The configuration as of the latest change (defaults until the first one arrives)."""
        return self._value

    def update(self, plugin_config: Any, license: License) -> None:
        """Adopt a new ``PluginConfig`` message."""
        self._value = tools_config_from_plugin_config(plugin_config, license)
