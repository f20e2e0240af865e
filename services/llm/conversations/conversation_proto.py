"""Translation between the agents.llm.v1 Conversations messages and the loop's data (the
model's own events go through ``services.llm.completion_proto``, as StreamComplete's do)."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from google.protobuf import struct_pb2

from services.llm.completion_proto import stream_event, tool_call_to_proto
from services.llm.conversations.actions import SummarizeInput
from services.llm.conversations.analysis import AnalyzeInput
from services.llm.conversations.answers import RespondInput
from services.llm.conversations.blocks import approval_state
from services.llm.conversations.model import (
    ApprovalRequired,
    Bound,
    Control,
    Conversation,
    Finish,
    Finished,
    RequestContext,
    Title,
    ToolUpdate,
    Turn,
    TurnEvent,
)
from services.llm.providers.base import TextDelta

_FINISH = {
    Finish.END_TURN: llm_pb2.STOP_REASON_END_TURN,
    Finish.MAX_TOKENS: llm_pb2.STOP_REASON_MAX_TOKENS,
    Finish.STOPPED: llm_pb2.STOP_REASON_STOPPED,
    Finish.ERROR: llm_pb2.STOP_REASON_ERROR,
    Finish.CONTENT_FILTER: llm_pb2.STOP_REASON_CONTENT_FILTER,
    Finish.AWAITING_APPROVAL: llm_pb2.STOP_REASON_AWAITING_APPROVAL,
}


def context_from(msg: llm_pb2.ConversationContext) -> RequestContext:
    """The request context of a ``ConversationContext`` message."""
    return RequestContext(
        user_id=msg.user_id,
        agent_id=msg.agent_id,
        channel_id=msg.channel_id,
        team_id=msg.team_id,
        is_direct_message=msg.is_direct_message,
        user_team_ids=tuple(msg.user_team_ids),
        user_timezone=msg.user_timezone,
    )


def respond_input(req: llm_pb2.RespondRequest) -> RespondInput:
    """A Respond request as the loop's input."""
    return RespondInput(
        ctx=context_from(req.context),
        post_id=req.post_id,
        root_post_id=req.root_post_id,
        message=req.message,
        file_ids=tuple(req.file_ids),
        response_post_id=req.response_post_id,
        automated_invoker=req.automated_invoker,
    )


def analyze_input(req: llm_pb2.AnalyzeRequest) -> AnalyzeInput:
    """An Analyze request as the loop's input."""
    return AnalyzeInput(context_from(req.context), req.post_id, req.analysis_type, req.response_post_id)


def summarize_input(req: llm_pb2.SummarizeRequest) -> SummarizeInput:
    """A Summarize request as the loop's input."""
    return SummarizeInput(
        context_from(req.context),
        req.preset_prompt,
        req.start_time,
        req.end_time,
        req.prompt,
        req.response_post_id,
        transcript_file_id=req.transcript_file_id,
        transcript_post_id=req.transcript_post_id,
        channel_tools=req.channel_tools,
    )


def tool_state(update: ToolUpdate) -> llm_pb2.ToolCallState:
    """A tool update as the ``ToolCallState`` users see."""
    return llm_pb2.ToolCallState(
        call=tool_call_to_proto(update.call), status=str(update.status), result=update.result, shared=update.shared
    )


def event_message(event: TurnEvent, conversation_id: str, post_id: str) -> llm_pb2.ConversationEvent:
    """One loop event as a ConversationEvent."""
    out = llm_pb2.ConversationEvent(conversation_id=conversation_id, post_id=post_id)
    if type(event) is TextDelta:
        out.stream.text_delta.text = event.text  # once per token: filled in place
    elif isinstance(event, Control):
        out.control = event.value
    elif isinstance(event, Title):
        out.title = event.title
    elif isinstance(event, ToolUpdate):
        out.tool_update.CopyFrom(tool_state(event))
    elif isinstance(event, ApprovalRequired):
        out.approval_required.CopyFrom(
            llm_pb2.ToolApprovalRequired(calls=[tool_state(c) for c in event.calls], stage=event.stage)
        )
    elif isinstance(event, Finished):
        out.stream.done.stop_reason = _FINISH[event.reason]
    elif not isinstance(event, Bound):
        out.stream.CopyFrom(stream_event(event))
    return out


def turn_message(turn: Turn) -> llm_pb2.Turn:
    """A stored turn as its proto, blocks as Structs."""
    content = []
    for block in turn.content:
        s = struct_pb2.Struct()
        s.update(block)
        content.append(s)
    return llm_pb2.Turn(
        id=turn.id,
        post_id=turn.post_id or "",
        role=str(turn.role),
        content=content,
        tokens_in=turn.tokens_in,
        tokens_out=turn.tokens_out,
        sequence=turn.sequence,
        approval_state=approval_state(turn),
    )


def conversation_message(conversation: Conversation, turns: list[Turn] | None = None) -> llm_pb2.Conversation:
    """A conversation as its proto, with ``turns`` when given (none in lists)."""
    return llm_pb2.Conversation(
        id=conversation.id,
        user_id=conversation.user_id,
        bot_id=conversation.bot_id,
        channel_id=conversation.channel_id or "",
        root_post_id=conversation.root_post_id or "",
        title=conversation.title,
        operation=conversation.operation,
        turn_count=len(turns) if turns is not None else conversation.turn_count,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        turns=[turn_message(t) for t in turns or []],
    )
