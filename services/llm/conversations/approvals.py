"""The tool-call state machine, pure: which proposed calls run now, which wait for the requester,
what a decision does to pending calls, and when repeated failures stop the model calling tools."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import FailedPrecondition
from services.llm.conversations.model import Block, ToolStatus
from services.llm.conversations.questions import ASK_USER_TOOL, question_problem
from services.llm.providers.base import Message, Role, TextPart, ToolCall, ToolResult

# The plugin's limit: after this many consecutive failed tool attempts the model must stop trying.
MAX_CONSECUTIVE_TOOL_FAILURES = 3
BATCH_SKIPPED_PREFIX = "[batch_skipped]"
FAILURE_CAP_INSTRUCTION = (
    "Three tool attempts in a row have failed. Do not call any more tools. Explain the latest "
    "error to the user in plain words and ask them how they would like to proceed."
)
REJECTED_RESULT = "Tool call rejected by user"


@dataclass(frozen=True)
class AvailableTool:
    """A tool the model may call in this context, with whether it runs without asking."""

    name: str
    description: str
    input_schema: dict[str, object]
    server_origin: str = ""
    auto_approved: bool = False


class PlanKind(enum.StrEnum):
    """What to do with the tool calls of a round."""

    RUN = "run"  # every call is auto-approved: execute them now
    ASK = "ask"  # at least one needs the requester: pause the turn
    QUESTION = "question"  # the model asks the requester a question: pause on it alone
    SKIP = "skip"  # an unknown tool or invalid arguments: answer every call with an error


@dataclass(frozen=True)
class ToolPlan:
    """The decision on a round's tool calls."""

    kind: PlanKind
    # For SKIP: the error result per call id.
    errors: dict[str, str]


def plan_tool_calls(calls: Sequence[ToolCall], tools: dict[str, AvailableTool]) -> ToolPlan:
    """Decide what to do with one round's tool calls.

    Like the plugin, one unknown tool or malformed argument set fails the whole batch: the valid
    calls are skipped (not run), so the model retries with a consistent set.
    """
    bad = {c.id: _problem(c, tools) for c in calls}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        errors = {
            c.id: bad.get(c.id) or f"{BATCH_SKIPPED_PREFIX} not run because another call in the batch was invalid"
            for c in calls
        }
        return ToolPlan(PlanKind.SKIP, errors)
    if any(c.name == ASK_USER_TOOL for c in calls):
        return ToolPlan(PlanKind.QUESTION, {})
    if all(tools[c.name].auto_approved for c in calls):
        return ToolPlan(PlanKind.RUN, {})
    return ToolPlan(PlanKind.ASK, {})


def _problem(call: ToolCall, tools: dict[str, AvailableTool]) -> str:
    if call.name not in tools:
        return f"tool {call.name} is not available"
    if not call.valid:
        return f"the arguments for {call.name} are not a JSON object"
    return question_problem(call)


@dataclass(frozen=True)
class Decision:
    """The result of a requester's decision on a paused turn."""

    blocks: list[Block]  # the anchor turn's blocks with statuses updated
    accepted: list[Block]  # tool_use blocks to execute now
    rejected: list[Block]


def apply_decision(blocks: Sequence[Block], accepted_ids: Sequence[str]) -> Decision:
    """Mark pending calls accepted or rejected. FailedPrecondition when nothing is pending (a
    stale click, or another replica already took the decision)."""
    wanted = set(accepted_ids)
    updated: list[Block] = []
    accepted: list[Block] = []
    rejected: list[Block] = []
    for block in blocks:
        # A pending question waits for its answer (``answer_blocks``), not for a decision.
        pending = block.get("type") == "tool_use" and block.get("status") == ToolStatus.PENDING
        if not pending or block.get("name") == ASK_USER_TOOL:
            updated.append(block)
            continue
        status = ToolStatus.ACCEPTED if block.get("id") in wanted else ToolStatus.REJECTED
        new = {**block, "status": str(status)}
        (accepted if status == ToolStatus.ACCEPTED else rejected).append(new)
        updated.append(new)
    if not accepted and not rejected:
        raise FailedPrecondition("no tool calls are waiting for a decision on this post")
    return Decision(updated, accepted, rejected)


def trailing_failed_tool_calls(messages: Sequence[Message]) -> int:
    """Consecutive failed tool results at the end of the conversation (batch-skipped calls do not
    count; a success or a new user message ends the run)."""
    count = 0
    for message in reversed(messages):
        if message.role == Role.USER and any(isinstance(p, TextPart) for p in message.parts):
            return count
        if message.role != Role.TOOL:
            continue
        for part in reversed(message.parts):
            if not isinstance(part, ToolResult) or part.content.startswith(BATCH_SKIPPED_PREFIX):
                continue
            if not part.is_error:
                return count
            count += 1
    return count


def tools_exhausted(messages: Sequence[Message]) -> bool:
    """True once the model must stop calling tools and explain the failure."""
    return trailing_failed_tool_calls(messages) >= MAX_CONSECUTIVE_TOOL_FAILURES
