"""AskUserQuestion's pure rules: what a valid question is, how a round asking one is planned, and
how the requester's answer settles it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.errors import FailedPrecondition, InvalidInput
from services.llm.conversations.approvals import AvailableTool, PlanKind, apply_decision, plan_tool_calls
from services.llm.conversations.blocks import tool_use_block
from services.llm.conversations.model import ToolStatus
from services.llm.conversations.questions import ASK_USER_TOOL, answer_blocks, question_of
from services.llm.providers.base import ToolCall

TOOLS = {
    ASK_USER_TOOL: AvailableTool(ASK_USER_TOOL, "", {}, auto_approved=True),
    "read_post": AvailableTool("read_post", "", {}, auto_approved=True),
}


def ask(cid: str = "q1", **arguments: Any) -> ToolCall:
    arguments = {"question": "Which one?", "options": ["a", "b"], **arguments}
    return ToolCall(cid, ASK_USER_TOOL, json.dumps(arguments), arguments)


@pytest.mark.parametrize(
    "arguments",
    [{"question": " "}, {"options": ["a"]}, {"options": ["a", "a"]}, {"options": ["a", ""]}, {"options": "a, b"}],
)
def test_a_question_needs_text_and_two_to_six_distinct_options(arguments: dict[str, Any]) -> None:
    assert question_of(ask(**arguments)) is None
    plan = plan_tool_calls([ask(**arguments)], TOOLS)
    assert plan.kind is PlanKind.SKIP and "2 to 6 distinct options" in plan.errors["q1"]


def test_a_round_that_asks_a_question_pauses_on_it_even_beside_auto_run_calls() -> None:
    read = ToolCall("r1", "read_post", "{}", {})
    assert plan_tool_calls([read, ask()], TOOLS).kind is PlanKind.QUESTION


def test_the_answer_must_be_one_of_the_options_and_settles_the_question_once() -> None:
    blocks = [tool_use_block(ask(), ToolStatus.PENDING, shared=True)]
    with pytest.raises(InvalidInput) as refused:
        answer_blocks(blocks, "", "c")
    assert refused.value.field == "answer"
    answered, call = answer_blocks(blocks, "q1", "b")
    assert call.id == "q1" and answered[0]["status"] == ToolStatus.SUCCESS
    with pytest.raises(FailedPrecondition):
        answer_blocks(answered, "q1", "a")


def test_a_tool_decision_does_not_settle_a_pending_question() -> None:
    with pytest.raises(FailedPrecondition):
        apply_decision([tool_use_block(ask(), ToolStatus.PENDING, shared=True)], ["q1"])
