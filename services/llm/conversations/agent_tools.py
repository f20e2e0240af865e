"""The tools service as turns use it: the tools a turn may call, and running approved calls as
the requesting user, one span per call. gRPC stays in this module; turns see plain data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import json_format, struct_pb2
from opentelemetry import trace

from services.common import attributes
from services.common.errors import DomainError
from services.common.grpc_client import unary
from services.common.telemetry import tracer
from services.llm.conversations.approvals import AvailableTool
from services.llm.conversations.model import RequestContext, ToolStatus
from services.llm.providers.base import Annotation, ToolCall

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolOutcome:
    """What one tool call returned, as the model gets it."""

    content: str
    is_error: bool
    # Sources the answer may link to (web search results, a fetched page).
    citations: tuple[Annotation, ...] = ()


@dataclass(frozen=True)
class ToolRun:
    """A tool call with its outcome."""

    call: ToolCall
    outcome: ToolOutcome

    @property
    def status(self) -> ToolStatus:
        """``error`` or ``success``, as the tool's block records it."""
        return ToolStatus.ERROR if self.outcome.is_error else ToolStatus.SUCCESS


class AgentTools:
    """Tools service calls with the current caller's identity."""

    def __init__(self, tools: tools_pb2_grpc.ToolsAsyncStub) -> None:
        self.tools = tools

    async def list_tools(self, ctx: RequestContext, conversation_id: str, *, automated: bool) -> list[AvailableTool]:
        """Tools the model may call here with their approval, or none when the tools service fails
        (the answer then comes without tools rather than not at all)."""
        try:
            reply = await unary(
                self.tools.ListTools,
                tools_pb2.ListToolsRequest(context=_tool_context(ctx, conversation_id, automated)),
            )
        except DomainError as err:
            logger.warning("tools unavailable for this turn: %s", err.message)
            return []
        tools = []
        for t in reply.tools:
            if t.policy.approval == tools_pb2.APPROVAL_POLICY_DISABLED:
                continue
            schema = json_format.MessageToDict(t.input_schema) if t.HasField("input_schema") else {}
            tools.append(
                AvailableTool(
                    name=t.name,
                    description=t.description,
                    input_schema=schema or {"type": "object", "properties": {}},
                    server_origin=t.server_origin,
                    auto_approved=t.auto_approved,
                )
            )
        return tools

    async def execute(
        self, ctx: RequestContext, conversation_id: str, name: str, arguments: dict[str, Any], call_id: str
    ) -> ToolOutcome:
        """Run a tool as the requesting user; refusals become error results for the model."""
        args = struct_pb2.Struct()
        args.update(arguments)
        try:
            reply = await unary(
                self.tools.ExecuteTool,
                tools_pb2.ExecuteToolRequest(
                    context=_tool_context(ctx, conversation_id, False),
                    tool_name=name,
                    arguments=args,
                    tool_call_id=call_id,
                ),
            )
        except DomainError as err:
            return ToolOutcome(f"the tool could not run: {err.message}", True)
        citations = tuple(Annotation(url=c.url, title=c.title) for c in reply.citations if c.url)
        return ToolOutcome(reply.content, reply.is_error, citations)

    async def run(
        self,
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
                attributes={
                    attributes.TOOL_NAME: call.name,
                    attributes.TOOL_ID: call.id,
                    attributes.USER_ID: ctx.user_id,
                },
            ) as span:
                outcome = await self.execute(ctx, conversation_id, call.name, dict(call.arguments or {}), call.id)
                run = ToolRun(call, outcome)
                span.set_attribute(attributes.TOOL_STATUS, str(run.status))
            runs.append(run)
        return runs


def _tool_context(ctx: RequestContext, conversation_id: str, automated: bool) -> tools_pb2.ToolContext:
    return tools_pb2.ToolContext(
        user_id=ctx.user_id,
        agent_id=ctx.agent_id,
        channel_id=ctx.channel_id,
        team_id=ctx.team_id,
        is_direct_message=ctx.is_direct_message,
        conversation_id=conversation_id,
        automated_invoker=automated,
        bound_channel_id=ctx.bound_channel_id,
    )
