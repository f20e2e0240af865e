"""Settings of the mcp service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_MCP_"


class McpSettings(CommonSettings):
    service_name: str = "mcp"
    grpc_port: int = Field(default=50053, ge=0, le=65535)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> McpSettings:
    return load_settings(McpSettings, PREFIX, environ, **fixed)
