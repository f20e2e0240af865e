"""Settings of the mcp service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_MCP_"


class McpSettings(CommonSettings):
    """``AGENTS_MCP_*``: the port; the shared ``AGENTS_*`` variables for the rest."""

    service_name: str = "mcp"
    grpc_port: int = Field(default=50053, ge=0, le=65535)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> McpSettings:
    """The mcp service's settings from ``AGENTS_MCP_*`` (and shared ``AGENTS_*``) variables."""
    return load_settings(McpSettings, PREFIX, environ, **fixed)
