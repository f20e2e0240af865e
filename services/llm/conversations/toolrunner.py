"""Running approved tool calls as the requesting user, one span per call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import trace

from services.common import attributes
from services.common.telemetry import tracer
from services.llm.conversations.model import RequestContext, ToolStatus
from services.llm.conversations.peers import Peers, ToolOutcome
from services.llm.providers.base import ToolCall


@dataclass(frozen=True)
class ToolRun:
    call: ToolCall
    outcome: ToolOutcome

    @property
    def status(self) -> ToolStatus:
        return ToolStatus.ERROR if self.outcome.is_error else ToolStatus.SUCCESS


async def run_tools(
    peers: Peers,
    ctx: RequestContext,
    conversation_id: str,
    calls: Sequence[ToolCall],
    parent: trace.Span | None = None,
) -> list[ToolRun]:
    """Execute calls one after another (a later call may depend on an earlier one's effect)."""
    runs: list[ToolRun] = []
    parent_ctx = trace.set_span_in_context(parent) if parent is not None else None
    for call in calls:
        with tracer(__name__).start_as_current_span(
            "handle tool call",
            context=parent_ctx,
            attributes={attributes.TOOL_NAME: call.name, attributes.TOOL_ID: call.id, attributes.USER_ID: ctx.user_id},
        ) as span:
            outcome = await peers.execute_tool(ctx, conversation_id, call.name, dict(call.arguments or {}), call.id)
            run = ToolRun(call, outcome)
            span.set_attribute(attributes.TOOL_STATUS, str(run.status))
        runs.append(run)
    return runs
