"""The remote MCP servers' use cases, free of gRPC: each user's tools, a tool call as that user,
the admins' live status, and the tools cache.

A tool call's output is the remote server's words: it goes back to the model as untrusted tool
output and never changes what the model may do (the caller's policies decide that).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent, Tool
from opentelemetry.trace import Status, StatusCode

from services.common import attributes
from services.common.errors import DomainError, NotFound, PermissionDenied, Unauthenticated, UpstreamUnavailable
from services.common.identity import remaining_seconds
from services.common.telemetry import tracer
from services.mcp.config import McpConfig, RemoteServer
from services.mcp.metrics import McpMetrics, Outcome
from services.mcp.sessions import SessionManager

# Left of the caller's deadline for our own answer once a remote call is cut.
ANSWER_MARGIN_SECONDS = 0.5
MIN_CALL_SECONDS = 0.1


@dataclass(frozen=True)
class RemoteTool:
    """One tool of a server with the admin's setting for it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    enabled: bool
    policy: str


@dataclass(frozen=True)
class ServerTools:
    """One server's tools as a user (or an admin's live check) sees them."""

    server: RemoteServer
    tools: tuple[RemoteTool, ...] = ()
    needs_oauth: bool = False
    error: str = ""


@dataclass(frozen=True)
class ToolOutcome:
    """What a call gave: text for the model, whether the tool failed, its structured result."""

    content: str
    is_error: bool = False
    structured: dict[str, Any] | None = field(default=None)


class RemoteTools:
    """ListUserTools, CallTool, GetServerStatus and ClearToolCache over the session manager."""

    def __init__(
        self,
        sessions: SessionManager,
        config: Callable[[], McpConfig],
        call_timeout: float,
        max_output_chars: int,
        metrics: McpMetrics,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._call_timeout = call_timeout
        self._max_output_chars = max_output_chars
        self._metrics = metrics

    def _deadline(self) -> float:
        """The per-call deadline: the setting, shortened to fit the caller's own deadline."""
        remaining = remaining_seconds()
        if remaining is None:
            return self._call_timeout
        return max(MIN_CALL_SECONDS, min(self._call_timeout, remaining - ANSWER_MARGIN_SECONDS))

    async def user_tools(
        self, user_id: str, disabled: frozenset[str] = frozenset(), only: frozenset[str] | None = None
    ) -> list[ServerTools]:
        """The enabled servers' tools for the user; ``only`` (origins) limits which are contacted."""
        servers = [
            s for s in self._config().enabled_servers() if s.name not in disabled and (only is None or s.origin in only)
        ]
        return list(await asyncio.gather(*(self._discover(user_id, s) for s in servers)))

    async def server_status(self, user_id: str) -> list[ServerTools]:
        """Every configured server, discovered live as the admin; disabled ones are not contacted."""
        servers = self._config().servers
        return list(await asyncio.gather(*(self._discover(user_id, s) if s.enabled else _idle(s) for s in servers)))

    def clear_cache(self) -> int:
        """Drop the listed tools; the next listing asks the servers again. Returns the servers cleared."""
        return self._sessions.clear_tools()

    def reset(self, user_id: str, server_name: str) -> None:
        """The user connected to or disconnected from the server: their session starts over."""
        self._sessions.close_session(user_id, server_name)

    async def call_tool(self, user_id: str, origin: str, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run ``name`` on the server of ``origin`` as the user."""
        server = self._config().by_origin(origin)
        if server is None or not server.enabled:
            raise NotFound(f"no enabled MCP server {origin!r}")
        if not server.tool(name).enabled:
            raise PermissionDenied(f"tool {name} of MCP server {server.name} is disabled by an administrator")
        with tracer(__name__).start_as_current_span("MCP tool call") as span:
            span.set_attribute(attributes.MCP_SERVER, server.name)
            span.set_attribute(attributes.MCP_TOOL, name)
            span.set_attribute(attributes.USER_ID, user_id)
            started = time.monotonic()
            outcome: Outcome = "error"
            try:
                # The SDK carries this span's context in the request's params._meta.
                result = await self._sessions.call_tool(user_id, server, name, arguments, self._deadline())
            except MCPError as exc:
                span.set_status(Status(StatusCode.ERROR, "tool error"))
                return ToolOutcome(f"the MCP server refused the call: {exc.error.message}", is_error=True)
            except DomainError as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                if isinstance(exc, UpstreamUnavailable) and exc.timeout:
                    outcome = "timeout"
                raise
            except asyncio.CancelledError:
                # The caller cancelled, went away or passed its deadline: no failure of the call's,
                # so the span keeps no error status either (OpenTelemetry leaves it unset).
                outcome = "cancelled"
                raise
            else:
                if result.is_error:
                    span.set_status(Status(StatusCode.ERROR, "tool error"))
                else:
                    outcome = "ok"
                return _outcome(result, self._max_output_chars)
            finally:
                self._metrics.observe_tool_call(server.name, outcome, time.monotonic() - started)

    async def _discover(self, user_id: str, server: RemoteServer) -> ServerTools:
        try:
            listed = await self._sessions.list_tools(user_id, server, self._deadline())
        except Unauthenticated:
            return ServerTools(server, needs_oauth=True)
        except DomainError as exc:
            return ServerTools(server, error=exc.message)
        except MCPError as exc:
            return ServerTools(server, error=f"MCP server {server.name} refused to list its tools: {exc.error.message}")
        return ServerTools(server, tuple(_tool(server, t) for t in listed))


async def _idle(server: RemoteServer) -> ServerTools:
    return ServerTools(server)


def _tool(server: RemoteServer, tool: Tool) -> RemoteTool:
    setting = server.tool(tool.name)
    return RemoteTool(tool.name, tool.description or "", dict(tool.input_schema), setting.enabled, setting.policy)


def _outcome(result: CallToolResult, max_chars: int) -> ToolOutcome:
    # Text blocks are what the model reads; other blocks are named, not inlined.
    text = "\n".join(b.text if isinstance(b, TextContent) else f"[{b.type} content]" for b in result.content)
    if len(text) > max_chars:
        # A server's output must not fill the model's context: the rest is cut, and the model told so.
        text = text[:max_chars] + f"\n[output truncated: {len(text) - max_chars} more characters]"
        return ToolOutcome(text, is_error=result.is_error)
    structured = result.structured_content if isinstance(result.structured_content, dict) else None
    return ToolOutcome(text, is_error=result.is_error, structured=structured)
