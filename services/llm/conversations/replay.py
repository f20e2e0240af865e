"""The state of a running turn folded from its events, replayed to a renderer that attaches late
(``Conversations.Attach``): control "start", the text so far as one delta, reasoning as one
delta, annotations, tool states, then the error and end if the turn already ended."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from services.llm.conversations.model import (
    ApprovalRequired,
    Control,
    Finished,
    Title,
    ToolUpdate,
    TurnEvent,
)
from services.llm.providers.base import Annotation, ReasoningDelta, StreamError, TextDelta


@dataclass
class TurnSnapshot:
    """What a renderer needs to draw the post as it is now."""

    title: str = ""
    text: str = ""
    reasoning: str = ""
    signature: str = ""
    annotations: list[Annotation] = field(default_factory=list)
    tools: dict[str, ToolUpdate] = field(default_factory=dict)
    approval: ApprovalRequired | None = None
    error: StreamError | None = None
    finished: Finished | None = None

    def apply(self, event: TurnEvent) -> None:
        """Fold one event in, the way the gateway's renderer folds it into the post."""
        if isinstance(event, Control):
            # start/continue rewrite the post from scratch; tool states survive (as in the renderer).
            self.text, self.reasoning, self.signature, self.error = "", "", "", None
            self.annotations = []
        elif isinstance(event, Title):
            self.title = event.title
        elif isinstance(event, TextDelta):
            self.text += event.text
        elif isinstance(event, ReasoningDelta):
            self.reasoning += event.text
            self.signature = event.signature or self.signature
        elif isinstance(event, Annotation):
            self.annotations.append(event)
        elif isinstance(event, ToolUpdate):
            self.tools[event.call.id] = event
        elif isinstance(event, ApprovalRequired):
            self.approval = event
        elif isinstance(event, StreamError):
            self.error = event
        elif isinstance(event, Finished):
            self.finished = event

    def replay(self) -> list[TurnEvent]:
        """The snapshot as events; ends with ``Finished`` when the turn already ended."""
        events: list[TurnEvent] = [Control("start")]
        if self.title:
            events.append(Title(self.title))
        if self.reasoning or self.signature:
            events.append(ReasoningDelta(self.reasoning, self.signature))
        if self.text:
            events.append(TextDelta(self.text))
        events.extend(self.annotations)
        events.extend(self.tools.values())
        if self.approval is not None:
            events.append(self.approval)
        if self.error is not None:
            events.append(self.error)
        if self.finished is not None:
            events.append(self.finished)
        return events


def for_viewer(event: TurnEvent, *, requester: bool) -> TurnEvent:
    """Tool arguments and results stay with the requester unless shared."""
    if requester:
        return event
    if isinstance(event, ToolUpdate) and not event.shared:
        return _redacted(event)
    if isinstance(event, ApprovalRequired):
        return ApprovalRequired(tuple(c if c.shared else _redacted(c) for c in event.calls), event.stage)
    return event


def _redacted(update: ToolUpdate) -> ToolUpdate:
    call = dataclasses.replace(update.call, raw_arguments="", arguments=None)
    return dataclasses.replace(update, call=call, result="")
