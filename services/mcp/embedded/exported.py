"""Remote MCP servers an admin re-exports through the Mattermost MCP server (``expose_external``;
beyond the plugin, whose issue #928 is open).

Each tool is listed and run with the calling user's own remote session and OAuth grant, through
the ``RemoteTools`` the agents use; the client's bearer token stays here (a remote server gets its
grant's token and the admin's headers only). Names clash as for agents: a Mattermost tool wins,
then the first server in the configuration. An external client cannot approve a call, so a tool
whose policy asks first is listed but refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import validate_mcp_param_headers

from services.common.errors import DomainError, NotFound, Unauthenticated
from services.mcp.config import McpConfig, RemoteServer
from services.mcp.remote import RemoteTool, RemoteTools, ServerTools
from services.tools.catalog import first_of_each_name
from services.tools.policies import Approval, policy_from_tool_config


@dataclass(frozen=True)
class _Exported:
    server: RemoteServer
    tool: RemoteTool


def error_result(message: str) -> types.CallToolResult:
    """A tool result telling the client the call failed, and why."""
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


class ExportedTools:
    """The re-exported servers' tools as one user sees them; ``reserved`` are the names that win."""

    def __init__(
        self,
        remote: RemoteTools,
        config: Callable[[], McpConfig],
        start_url: Callable[[RemoteServer], str],
        reserved: Iterable[str],
    ) -> None:
        self._remote = remote
        self._config = config
        self._start_url = start_url
        self._reserved = frozenset(reserved)

    async def _listing(self, user_id: str) -> tuple[list[_Exported], list[ServerTools]]:
        origins = self._config().exported_origins()
        if not origins:
            return [], []  # nothing re-exported: no remote server is asked
        # Each server is cut at the per-call deadline: a hung one leaves the others' tools listed.
        found = await self._remote.user_tools(user_id, only=origins)
        enabled = [_Exported(s.server, t) for s in found for t in s.tools if t.enabled]
        return first_of_each_name(enabled, lambda e: e.tool.name, self._reserved), found

    async def tools(self, user_id: str) -> list[types.Tool]:
        """The tools the user can use, in configuration order."""
        listed, _ = await self._listing(user_id)
        return [
            types.Tool(name=e.tool.name, description=e.tool.description, input_schema=e.tool.input_schema)
            for e in listed
        ]

    async def call(
        self, user_id: str, name: str, arguments: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> types.CallToolResult | None:
        """Run ``name`` as the user; None when no re-exported server offers it to them. A call
        with ``headers`` (the 2026-07-28 era's) is refused with ``HEADER_MISMATCH`` where its
        ``Mcp-Param-*`` headers disagree with the arguments the tool's schema marks."""
        listed, found = await self._listing(user_id)
        chosen = next((e for e in listed if e.tool.name == name), None)
        if chosen is not None and headers is not None:
            rejection = validate_mcp_param_headers(chosen.tool.input_schema, arguments, headers)
            if rejection is not None:
                raise MCPError(rejection.code, rejection.message)
        if chosen is None:
            # Servers the user has not connected to list nothing: the tool may be one of theirs.
            locked = [s.server for s in found if s.needs_oauth]
            if not locked:
                return None
            return error_result(f"tool {name!r} is not among your tools; it may be a tool of {self._connect(locked)}")
        policy = policy_from_tool_config(name, chosen.tool.policy, chosen.tool.enabled)
        if policy.approval is not Approval.AUTO:
            return error_result(
                f"tool {name} of MCP server {chosen.server.name} needs the user's approval for each call, which an "
                "external MCP client cannot give; an administrator can set it to run without asking"
            )
        try:
            outcome = await self._remote.call_tool(user_id, chosen.server.origin, name, arguments)
        except Unauthenticated:
            return error_result(f"tool {name} needs your account at {self._connect([chosen.server])}")
        except NotFound:
            # Removed or disabled since the listing (its message would name the server's URL).
            return error_result(f"{name} failed: MCP server {chosen.server.name} is no longer available")
        except DomainError as err:
            return error_result(f"{name} failed: {err.message}")
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.content)],
            structured_content=outcome.structured,
            is_error=outcome.is_error,
        )

    def _connect(self, servers: list[RemoteServer]) -> str:
        """The servers, each with where the user connects to it."""
        return " or ".join(f"MCP server {s.name} (to connect, open {self._start_url(s)} in a browser)" for s in servers)
