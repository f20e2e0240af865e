"""Settings of the tools service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_TOOLS_"


class ToolsSettings(CommonSettings):
    service_name: str = "tools"
    grpc_port: int = Field(default=50052, ge=0, le=65535)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> ToolsSettings:
    return load_settings(ToolsSettings, PREFIX, environ, **fixed)
