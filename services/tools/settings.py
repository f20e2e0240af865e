"""Settings of the tools service."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from services.common.settings import CommonSettings, load_settings

PREFIX = "AGENTS_TOOLS_"


class ToolsSettings(CommonSettings):
    """``AGENTS_TOOLS_*``: the port, the database pool, and the limits on outbound tool requests."""

    service_name: str = "tools"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    db_pool_size: int = Field(default=10, ge=1)
    # Hosts (comma/space separated, ``*.example.com`` wildcards) that tool requests may reach even
    # though they resolve to private, loopback or link-local addresses: an intranet search proxy,
    # a self-hosted SearXNG. A deployment setting (env / Helm values) on purpose, not a plugin
    # config field: opening the internal network must take an operator, not one admin session
    # in the web UI. Such hosts still have to pass allowedUpstreamHostnames when that list is set.
    private_allowed_hostnames: str = ""
    # Cap on a fetched page (decompressed bytes) and on the text of it handed to the model.
    page_fetch_max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    page_fetch_max_chars: int = Field(default=20_000, gt=0)
    # Seconds one outbound tool request (search API call or page fetch) may take in total.
    outbound_timeout_seconds: float = Field(default=20.0, gt=0)


def load(environ: Mapping[str, str] | None = None, **fixed: object) -> ToolsSettings:
    """The tools service's settings from ``AGENTS_TOOLS_*`` (and shared ``AGENTS_*``) variables."""
    return load_settings(ToolsSettings, PREFIX, environ, **fixed)
