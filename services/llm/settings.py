"""Settings of the llm service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_LLM_"


class LlmSettings(CommonSettings):
    service_name: str = "llm"
    grpc_port: int = Field(default=50051, ge=0, le=65535)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> LlmSettings:
    return load_settings(LlmSettings, PREFIX, environ, **fixed)
