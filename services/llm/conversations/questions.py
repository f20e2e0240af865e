"""AskUserQuestion: the agent asks the requester a multiple-choice question and the turn waits.

The tools service lists the tool (its policy, who is offered it); the conversation loop never
runs it: a round that calls it pauses like a pending approval, with the call stored pending on the
reply post, and the requester's choice resumes the turn as the call's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidInput
from services.llm.conversations.blocks import now_ms, tool_call_from_block
from services.llm.conversations.model import Block, ToolStatus
from services.llm.providers.base import ToolCall

# The tools service's built-in tool (services/tools/catalog.py); the name is the wire contract.
ASK_USER_TOOL = "ask_user_question"
# The approval stage a question pauses with (ToolApprovalRequired.stage): the reply shows it.
QUESTION_STAGE = "question"
MIN_OPTIONS, MAX_OPTIONS = 2, 6
MAX_QUESTION_CHARS, MAX_OPTION_CHARS = 1000, 200


@dataclass(frozen=True)
class Question:
    """What the agent asks: a question and the options the requester picks from."""

    text: str
    options: tuple[str, ...]


def question_of(call: ToolCall) -> Question | None:
    """The question an ``ask_user_question`` call asks, or None when its arguments are not one."""
    args = call.arguments or {}
    text, options = args.get("question"), args.get("options")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUESTION_CHARS:
        return None
    if not isinstance(options, list) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS:
        return None
    if not all(isinstance(o, str) and o.strip() and len(o) <= MAX_OPTION_CHARS for o in options):
        return None
    if len(set(options)) != len(options):
        return None
    return Question(text.strip(), tuple(options))


def asked_question(calls: Sequence[ToolCall]) -> ToolCall:
    """The round's first ``ask_user_question`` call (the plan found one)."""
    return next(c for c in calls if c.name == ASK_USER_TOOL)


def question_problem(call: ToolCall) -> str:
    """Why a call to the tool asks no valid question ("" when it does), for the model to retry."""
    if call.name != ASK_USER_TOOL or question_of(call) is not None:
        return ""
    return (
        f"{ASK_USER_TOOL} needs a question (at most {MAX_QUESTION_CHARS} characters) and "
        f"{MIN_OPTIONS} to {MAX_OPTIONS} distinct options (each at most {MAX_OPTION_CHARS} characters)"
    )


def answer_result(answer: str) -> str:
    """The call's result the model reads once the requester chose."""
    return f"The user chose: {answer}"


def answer_blocks(blocks: Sequence[Block], call_id: str, answer: str) -> tuple[list[Block], ToolCall]:
    """The anchor turn's blocks with its pending question answered, and the question's call.
    FailedPrecondition when no question waits (a stale click, or answered already); InvalidInput
    when ``answer`` is not one of its options or ``call_id`` names another call."""
    pending = [
        b
        for b in blocks
        if b.get("type") == "tool_use" and b.get("name") == ASK_USER_TOOL and b.get("status") == ToolStatus.PENDING
    ]
    if not pending:
        raise FailedPrecondition("no question is waiting for an answer on this post")
    block = pending[0]
    if call_id and block.get("id") != call_id:
        raise InvalidInput("tool_call_id does not name the pending question", field="tool_call_id")
    call = tool_call_from_block(block)
    question = question_of(call)
    if question is None or answer not in question.options:
        options = ", ".join(question.options) if question else ""
        raise InvalidInput(f"answer must be one of the options: {options}", field="answer")
    answered = {**block, "status": str(ToolStatus.SUCCESS), "decided_at": now_ms()}
    return [answered if b is block else b for b in blocks], call
