"""The tool-call state machine and the failure cap."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition
from services.llm.conversations.approvals import (
    BATCH_SKIPPED_PREFIX,
    AvailableTool,
    PlanKind,
    apply_decision,
    plan_tool_calls,
    tools_exhausted,
    trailing_failed_tool_calls,
)
from services.llm.providers.base import Message, Role, ToolCall, ToolResult

TOOLS = {
    "auto": AvailableTool("auto", "", {}, auto_approved=True),
    "ask": AvailableTool("ask", "", {}, auto_approved=False),
}


def call(name: str, cid: str = "c1", valid: bool = True) -> ToolCall:
    return ToolCall(cid, name, "{}", {} if valid else None, valid)


def results(*errors: bool, content: str = "x") -> Message:
    return Message(Role.TOOL, tuple(ToolResult(f"c{i}", "t", content, is_error=e) for i, e in enumerate(errors)))


def test_auto_approved_calls_run_without_asking() -> None:
    assert plan_tool_calls([call("auto")], TOOLS).kind == PlanKind.RUN


def test_one_call_needing_approval_pauses_the_whole_batch() -> None:
    assert plan_tool_calls([call("auto", "a"), call("ask", "b")], TOOLS).kind == PlanKind.ASK


def test_an_unknown_tool_fails_the_batch_and_skips_the_valid_calls() -> None:
    plan = plan_tool_calls([call("auto", "a"), call("nope", "b")], TOOLS)
    assert plan.kind == PlanKind.SKIP
    assert plan.errors["b"] == "tool nope is not available"
    assert plan.errors["a"].startswith(BATCH_SKIPPED_PREFIX)


def test_invalid_arguments_fail_the_batch() -> None:
    assert plan_tool_calls([call("auto", valid=False)], TOOLS).kind == PlanKind.SKIP


def test_a_decision_accepts_the_chosen_calls_and_rejects_the_rest() -> None:
    blocks = [
        {"type": "text", "text": "let me look"},
        {"type": "tool_use", "id": "a", "name": "x", "status": "pending"},
        {"type": "tool_use", "id": "b", "name": "y", "status": "pending"},
    ]
    decision = apply_decision(blocks, ["a"])
    assert [b["id"] for b in decision.accepted] == ["a"] and [b["id"] for b in decision.rejected] == ["b"]
    assert [b.get("status") for b in decision.blocks] == [None, "accepted", "rejected"]


def test_a_decision_without_pending_calls_is_stale() -> None:
    with pytest.raises(FailedPrecondition):
        apply_decision([{"type": "tool_use", "id": "a", "status": "accepted"}], ["a"])


def test_three_trailing_failures_exhaust_the_tools() -> None:
    messages = [Message.text(Role.USER, "go"), results(True), results(True), results(True)]
    assert trailing_failed_tool_calls(messages) == 3 and tools_exhausted(messages)


def test_a_success_resets_the_failure_count() -> None:
    messages = [results(True), results(True), results(False), results(True)]
    assert trailing_failed_tool_calls(messages) == 1


def test_a_new_user_message_resets_the_failure_count() -> None:
    messages = [results(True), results(True), results(True), Message.text(Role.USER, "try again")]
    assert not tools_exhausted(messages)


def test_batch_skipped_calls_do_not_count_as_failures() -> None:
    skipped = results(True, content=f"{BATCH_SKIPPED_PREFIX} not run")
    assert trailing_failed_tool_calls([results(True), skipped, skipped]) == 1
