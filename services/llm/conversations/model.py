"""What the conversation loop works with: conversations, turns, the bot posts being written, and
the events a turn emits. Plain data; no gRPC, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from services.llm.providers.base import (
    Annotation,
    Done,
    Event,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
)

Block = dict[str, Any]  # one ContentBlock, in the plugin's JSON shape


class TurnRole(enum.StrEnum):
    """Who a stored turn is from."""

    USER = "user"
    ASSISTANT = "assistant"
    TOOL_RESULT = "tool_result"


class Operation(enum.StrEnum):
    """What started a conversation (stored, and attributed in usage records)."""

    CONVERSATION = "conversation"
    THREAD_ANALYSIS = "thread_analysis"
    CHANNEL_INTERVAL = "channel_interval"
    MEETING_SUMMARY = "meeting_summary"


class ToolStatus(enum.StrEnum):
    """The state of a tool call, as its block and ``ToolCallState`` record it."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ERROR = "error"
    SUCCESS = "success"
    AUTO_APPROVED = "auto_approved"


@dataclass(frozen=True)
class Conversation:
    """A stored conversation: one thread between a user and an agent's bot."""

    id: str
    user_id: str
    bot_id: str
    channel_id: str | None
    root_post_id: str | None
    title: str
    system_prompt: str
    operation: str
    created_at: int
    updated_at: int
    turn_count: int = 0


@dataclass(frozen=True)
class Turn:
    """One stored turn of a conversation, its content as ContentBlocks."""

    id: str
    conversation_id: str
    post_id: str | None
    role: TurnRole
    content: list[Block]
    sequence: int
    tokens_in: int = 0
    tokens_out: int = 0
    created_at: int = 0


@dataclass(frozen=True)
class StreamRecord:
    """A bot post the cluster writes (or wrote) into: who asked, what produced it, its stop flag."""

    response_post_id: str
    conversation_id: str
    user_id: str
    request_post_id: str
    kind: Operation
    params: dict[str, Any]
    no_regen: bool
    state: str
    stop_requested: bool
    # gRPC address of the llm replica running (or that ran) the post's turn.
    runner: str = ""


@dataclass(frozen=True)
class RequestContext:
    """Where a turn happens and for whom (the RPC's ConversationContext)."""

    user_id: str
    agent_id: str
    channel_id: str = ""
    team_id: str = ""
    is_direct_message: bool = False
    user_team_ids: tuple[str, ...] = ()
    user_timezone: str = ""
    # A channel analysis: its channel readers are bound to this channel (the tools service's rule).
    bound_channel_id: str = ""

    def as_params(self) -> dict[str, Any]:
        """The context as stored with a stream (``from_params`` reads it back)."""
        return {
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "channel_id": self.channel_id,
            "team_id": self.team_id,
            "is_direct_message": self.is_direct_message,
            "user_team_ids": list(self.user_team_ids),
            "user_timezone": self.user_timezone,
            "bound_channel_id": self.bound_channel_id,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RequestContext:
        """The context back from ``as_params``; missing keys read as empty."""
        return cls(
            user_id=str(params.get("user_id", "")),
            agent_id=str(params.get("agent_id", "")),
            channel_id=str(params.get("channel_id", "")),
            team_id=str(params.get("team_id", "")),
            is_direct_message=bool(params.get("is_direct_message", False)),
            user_team_ids=tuple(params.get("user_team_ids", ())),
            user_timezone=str(params.get("user_timezone", "")),
            bound_channel_id=str(params.get("bound_channel_id", "")),
        )


# ---- events a turn emits (the servicer turns them into ConversationEvent messages) ------------


@dataclass(frozen=True)
class Bound:
    """First event of every stream, not sent to clients: the conversation the events belong to."""

    conversation_id: str


@dataclass(frozen=True)
class Control:
    """``start`` when a stream begins writing a post, ``continue`` when it resumes after approval."""

    value: str


@dataclass(frozen=True)
class Title:
    """The conversation got its generated title."""

    title: str


@dataclass(frozen=True)
class ToolUpdate:
    """A tool call's new state; ``result`` only for those who may see it."""

    call: ToolCall
    status: ToolStatus
    result: str = ""
    shared: bool = False


@dataclass(frozen=True)
class ApprovalRequired:
    """The turn paused: these calls wait for the requester's decision."""

    calls: tuple[ToolUpdate, ...]
    stage: str = "call"  # call: approve execution; result: approve sharing into the channel


class Finish(enum.StrEnum):
    """How a turn ended."""

    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOPPED = "stopped"
    ERROR = "error"
    CONTENT_FILTER = "content_filter"
    AWAITING_APPROVAL = "awaiting_approval"


@dataclass(frozen=True)
class Finished:
    """Always the last event of a stream."""

    reason: Finish


TurnEvent = (
    Bound
    | Control
    | Title
    | ToolUpdate
    | ApprovalRequired
    | Finished
    | TextDelta
    | ReasoningDelta
    | Annotation
    | Usage
    | StreamError
)


@dataclass
class RoundOutput:
    """What one model call produced, gathered while its events were forwarded."""

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: StreamError | None = None
    stopped: bool = False
    finish: str = "end_turn"

    def add(self, event: Event) -> TypeGuard[TextDelta | ReasoningDelta | Annotation | Usage]:
        """Folds one event of the model call in; True when the turn forwards it as it comes.
        Tool calls are announced as tool updates once the round's plan is known, an error after
        the partial text is saved, and ``Done`` ends the round."""
        if isinstance(event, TextDelta):
            self.text += event.text
        elif isinstance(event, ReasoningDelta):
            self.reasoning += event.text
            self.reasoning_signature = event.signature or self.reasoning_signature
        elif isinstance(event, ToolCallEvent):
            self.tool_calls.append(event.call)
            return False
        elif isinstance(event, Annotation):
            self.annotations.append(event)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, StreamError):
            self.error = event
            return False
        elif isinstance(event, Done):
            self.finish = str(event.stop_reason)
            return False
        return True
