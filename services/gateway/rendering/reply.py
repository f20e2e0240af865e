"""What a reply post shows, folded from a turn's ``ConversationEvent``s (no I/O here).

``ReplyState.apply`` turns each event into the plugin's ``postupdate`` payloads (section 1.8 of
plugin-api.md) and keeps what the post must carry: the text so far, the reasoning summary, the
citations, the tool calls with their approval state, and how the turn ended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from google.protobuf import json_format

from services.common.mattermost import Post

# The plugin's English UI strings (server/i18n): users and their scripts know these words.
ERROR_LEAD = "Sorry! An error occurred while accessing the LLM"
ERROR_TEXT = f"{ERROR_LEAD}. See server logs for details."
EMPTY_TEXT = "Sorry! The LLM did not return a result."
# Ours: the reply to a post that could not be answered while a dependency was down.
UNAVAILABLE_TEXT = "Sorry! The agent could not answer: a service it needs is unavailable. Please try again later."
# Ours: appended while a reply is handed off (its gateway stopped before the answer ended).
HANDOFF_TEXT = "(The agents service restarted before this answer was finished; it continues here once it is back.)"

POST_TYPE = "custom_llmbot"
# Post props (the plugin's names, plus the stream status this cluster adds: there is no plugin
# process that could remember a post is mid-stream, so the post says it).
PROP_CONVERSATION_ID = "conversation_id"
PROP_RESPONDING_TO = "responding_to"
PROP_REQUESTER = "llm_requester_user_id"
PROP_UNSAFE_LINKS = "unsafe_links"
PROP_TOOL_CALLS = "pending_tool_call"
PROP_REASONING = "reasoning_summary"
PROP_ANNOTATIONS = "annotations"
PROP_STREAM_STATUS = "agents_stream_status"
# The question a paused turn asks (AskUserQuestion): {tool_call_id, question, options}, for the
# webapp to offer the options; the message shows it too, for every other client.
PROP_QUESTION = "ask_user_question"
QUESTION_STAGE = "question"

STREAMING = "streaming"
DONE = "done"
STOPPED = "stopped"
INTERRUPTED = "interrupted"
AWAITING_APPROVAL = "awaiting_approval"
# Not final: the gateway rendering it stopped and handed its claim back; the next replica whose
# sweep takes the claim over finishes the post.
HANDED_OFF = "handed_off"
FINAL_STATUSES = frozenset({DONE, STOPPED, INTERRUPTED, AWAITING_APPROVAL})


@dataclass(frozen=True)
class PostUpdate:
    """One ``postupdate`` payload; ``redacted`` (when set) is what everyone but the requester gets."""

    payload: dict[str, Any]
    redacted: dict[str, Any] | None = None

    def for_user(self, user_id: str, requester_id: str) -> dict[str, Any]:
        """The payload a given viewer may see."""
        if self.redacted is None or user_id == requester_id:
            return self.payload
        return self.redacted


def base_props(
    *, conversation_id: str, responding_to: str, requester_id: str, allow_unsafe_links: bool
) -> dict[str, Any]:
    """The props a reply post is created with."""
    props: dict[str, Any] = {
        PROP_RESPONDING_TO: responding_to,
        PROP_REQUESTER: requester_id,
        PROP_STREAM_STATUS: STREAMING,
    }
    if conversation_id:
        props[PROP_CONVERSATION_ID] = conversation_id
    if not allow_unsafe_links:
        props[PROP_UNSAFE_LINKS] = "true"
    return props


def _tool_call_json(state: llm_pb2.ToolCallState) -> dict[str, Any]:
    call = state.call
    arguments: Any = json_format.MessageToDict(call.arguments) if call.HasField("arguments") else {}
    if not arguments and call.raw_arguments:
        arguments = call.raw_arguments
    return {
        "id": call.id,
        "name": call.name,
        "description": "",
        "arguments": arguments,
        "result": state.result,
        "status": state.status or "pending",
    }


def _question(state: llm_pb2.ToolCallState) -> dict[str, Any]:
    arguments = json_format.MessageToDict(state.call.arguments)
    return {"tool_call_id": state.call.id, "question": arguments["question"], "options": arguments["options"]}


@dataclass
class ReplyState:
    """The reply post being written, as the events so far describe it."""

    post_id: str
    requester_id: str
    props: dict[str, Any] = field(default_factory=dict)
    text: str = ""
    reasoning: str = ""
    annotations: list[dict[str, Any]] = field(default_factory=list)
    tool_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: str = STREAMING
    conversation_id: str = ""
    error: str = ""
    # Bumped on every change the post shows; the writer patches when it moved.
    version: int = 0

    @classmethod
    def of_post(cls, post: Post) -> ReplyState:
        """An existing reply post about to be continued (tool decisions, a taken-over turn) or
        rewritten (regenerate): its answer so far, without a hand-off note."""
        return cls(
            post_id=post.id,
            requester_id=str(post.props.get(PROP_REQUESTER, "")),
            props=dict(post.props),
            text=answer_text(post.message),
            conversation_id=str(post.props.get(PROP_CONVERSATION_ID, "")),
        )

    @property
    def finished(self) -> bool:
        """True once the reply's status is final (``FINAL_STATUSES``): this turn writes no more."""
        return self.status in FINAL_STATUSES

    def apply(self, event: llm_pb2.ConversationEvent) -> list[PostUpdate]:
        """Fold one event in; returns the ``postupdate`` payloads it produces."""
        if event.conversation_id and not self.conversation_id:
            self.conversation_id = event.conversation_id
            self.props[PROP_CONVERSATION_ID] = event.conversation_id
        kind = event.WhichOneof("event")
        if kind == "control":
            return self._control(event.control)
        if kind == "stream":
            return self._stream(event.stream)
        if kind == "approval_required":
            for call in event.approval_required.calls:
                self.tool_calls[call.call.id] = _tool_call_json(call)
            if event.approval_required.stage == QUESTION_STAGE:
                self.props[PROP_QUESTION] = _question(event.approval_required.calls[0])
            self.version += 1
            return [self.tool_call_update()]
        if kind == "tool_update":
            self.tool_calls[event.tool_update.call.id] = _tool_call_json(event.tool_update)
            self.version += 1
            return [self.tool_call_update()]
        return []

    def _update(self, **payload: Any) -> PostUpdate:
        return PostUpdate({"post_id": self.post_id, **payload})

    def _control(self, control: str) -> list[PostUpdate]:
        if control in ("start", "continue"):
            # A regenerated or resumed turn rewrites the post from scratch, as the plugin does.
            self.text, self.reasoning, self.error = "", "", ""
            self.annotations = []
            self.props.pop(PROP_QUESTION, None)
            self.status = STREAMING
            self.version += 1
        return [self._update(control=control)]

    def _stream(self, stream: llm_pb2.StreamEvent) -> list[PostUpdate]:
        kind = stream.WhichOneof("event")
        if kind == "text_delta":
            self.text += stream.text_delta.text
            self.version += 1
            return [self._update(next=self.text)]
        if kind == "reasoning_delta":
            self.reasoning += stream.reasoning_delta.text
            self.version += 1
            return [self._update(control="reasoning_summary", reasoning=self.reasoning)]
        if kind == "annotation":
            a = stream.annotation
            self.annotations.append(
                {
                    "type": "url_citation",
                    "start_index": a.start_index,
                    "end_index": a.end_index,
                    "url": a.url,
                    "title": a.title,
                    "index": len(self.annotations) + 1,
                }
            )
            self.version += 1
            return [self._update(control="annotations", annotations=json.dumps(self.annotations))]
        if kind == "tool_call":
            call = llm_pb2.ToolCallState(call=stream.tool_call, status="pending")
            self.tool_calls.setdefault(stream.tool_call.id, _tool_call_json(call))
            self.version += 1
            return [self.tool_call_update()]
        if kind == "error":
            self.error = error_notice(stream.error.message)
            return []
        if kind == "done":
            return self._done(stream.done.stop_reason)
        return []

    def tool_call_update(self) -> PostUpdate:
        """The ``tool_call`` payload for the calls so far (arguments and results redacted for others)."""
        calls = list(self.tool_calls.values())
        redacted = [{**c, "arguments": {}, "result": ""} for c in calls]
        return PostUpdate(
            {"post_id": self.post_id, "control": "tool_call", "tool_call": json.dumps(calls)},
            {"post_id": self.post_id, "control": "tool_call", "tool_call": json.dumps(redacted)},
        )

    def _done(self, reason: int) -> list[PostUpdate]:
        if reason == llm_pb2.STOP_REASON_STOPPED:
            return self.stop()
        if reason == llm_pb2.STOP_REASON_ERROR or self.error:
            return self.interrupt()
        self.status = AWAITING_APPROVAL if reason == llm_pb2.STOP_REASON_AWAITING_APPROVAL else DONE
        self.version += 1
        updates = []
        if self.reasoning:
            updates.append(self._update(control="reasoning_summary_done", reasoning=self.reasoning))
        return [*updates, self._update(control="end")]

    def stop(self) -> list[PostUpdate]:
        """The requester stopped the turn: the text stays, the post says it was stopped."""
        self.status = STOPPED
        self.version += 1
        return [self._update(control="cancel")]

    def interrupt(self) -> list[PostUpdate]:
        """The turn failed (or its stream was lost): the text stays and the error is appended."""
        self.status = INTERRUPTED
        self.version += 1
        return [self._update(next=self.message()), self._update(control="end")]

    def hand_off(self) -> None:
        """This replica stops rendering before the turn ended; another one will finish the post."""
        self.status = HANDED_OFF
        self.version += 1

    def message(self) -> str:
        """The post's message now."""
        if self.status == INTERRUPTED:
            notice = self.error or ERROR_TEXT
            return f"{self.text}\n\n{notice}" if self.text else notice
        if self.status == HANDED_OFF:
            return f"{self.text}\n\n{HANDOFF_TEXT}" if self.text else HANDOFF_TEXT
        if self.status == DONE and not self.text and not self.tool_calls:
            return EMPTY_TEXT
        question = self.props.get(PROP_QUESTION)
        if question:
            choices = "\n".join(f"{n}. {option}" for n, option in enumerate(question["options"], 1))
            return "\n\n".join(part for part in (self.text, f"**{question['question']}**\n{choices}") if part)
        return self.text

    def post_props(self) -> dict[str, Any]:
        """The post's props now: what it was created with plus the metadata so far."""
        props = dict(self.props)
        props[PROP_STREAM_STATUS] = self.status
        if self.tool_calls:
            # Every channel member reads post props: arguments and results go only to the
            # requester (SSE, conversation route), the post shows names and states.
            calls = [{**c, "arguments": {}, "result": ""} for c in self.tool_calls.values()]
            props[PROP_TOOL_CALLS] = json.dumps(calls)
        if self.reasoning:
            props[PROP_REASONING] = self.reasoning
        if self.annotations:
            props[PROP_ANNOTATIONS] = self.annotations
        return props


def error_notice(message: str) -> str:
    """What a failed reply says: the plugin's words, then the llm service's reason when it sent
    one (safe to show, says what to do: rate limited and when to retry, unavailable, stalled)."""
    return f"{ERROR_LEAD}: {message}" if message else ERROR_TEXT


def answer_text(message: str) -> str:
    """The answer in a reply post's message, without the note a hand-off appended."""
    return "" if message == HANDOFF_TEXT else message.removesuffix(f"\n\n{HANDOFF_TEXT}")
