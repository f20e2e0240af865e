"""The bridge's wire shapes: its CompletionRequest JSON → an ``agents.llm.v1`` request, and
stream events → the plugin's ``TextStreamEvent`` JSON (``{"Type": n, "Value": ...}``).

Type numbers are the plugin's: 0 text, 1 end, 2 error, 3 tool_calls, 4 reasoning,
5 reasoning_end, 6 annotations, 7 usage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.errors import InvalidInput
from services.common.mattermost.attachments import MAX_FILES
from services.gateway.proto_json import INT32_MAX
from services.gateway.request_input import check_mattermost_id, check_optional_mattermost_id

TEXT, END, ERROR, TOOL_CALLS, REASONING, REASONING_END, ANNOTATIONS, USAGE = range(8)

_ROLES = {
    "user": llm_pb2.ROLE_USER,
    "assistant": llm_pb2.ROLE_ASSISTANT,
    "bot": llm_pb2.ROLE_ASSISTANT,
    "system": llm_pb2.ROLE_SYSTEM,
}


@dataclass(frozen=True)
class BridgeRequest:
    """A validated bridge ``CompletionRequest``."""

    messages: list[llm_pb2.Message]
    # The file ids of each post, in the order of ``messages``.
    file_ids: tuple[tuple[str, ...], ...] = ()
    max_generated_tokens: int = 0
    json_output_format: dict[str, Any] | None = None
    allowed_tools: list[str] = field(default_factory=list)
    has_tool_hooks: bool = False
    operation: str = ""
    operation_subtype: str = ""
    user_id: str = ""
    channel_id: str = ""


def parse_bridge_request(body: Any) -> BridgeRequest:
    """Validate the JSON body; ``InvalidInput`` (400) names the bad field."""
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", field="body")
    messages, file_ids = _parse_posts(body.get("posts"))
    if sum(map(len, file_ids)) > MAX_FILES:
        raise InvalidInput(f"at most {MAX_FILES} file_ids may be attached to one request", field="posts")
    max_tokens = body.get("max_generated_tokens") or 0
    if not isinstance(max_tokens, int) or not 0 <= max_tokens <= INT32_MAX:
        raise InvalidInput(
            f"max_generated_tokens must be an integer from 0 to {INT32_MAX}", field="max_generated_tokens"
        )
    schema = body.get("json_output_format")
    if schema is not None and not isinstance(schema, dict):
        raise InvalidInput("json_output_format must be a JSON schema object", field="json_output_format")
    tools = body.get("allowed_tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise InvalidInput("allowed_tools must be a list of tool names", field="allowed_tools")
    return BridgeRequest(
        messages=messages,
        file_ids=tuple(file_ids),
        max_generated_tokens=max_tokens,
        json_output_format=schema,
        allowed_tools=tools,
        has_tool_hooks=bool(body.get("tool_hooks")),
        operation=str(body.get("operation") or ""),
        operation_subtype=str(body.get("operation_subtype") or ""),
        user_id=_optional_id(body, "user_id"),
        channel_id=_optional_id(body, "channel_id"),
    )


def _parse_posts(posts: Any) -> tuple[list[llm_pb2.Message], list[tuple[str, ...]]]:
    if not isinstance(posts, list) or not posts:
        raise InvalidInput("posts must hold at least one post", field="posts")
    messages = []
    file_ids = []
    for i, post in enumerate(posts):
        if not isinstance(post, dict):
            raise InvalidInput(f"posts[{i}] must be an object", field="posts")
        role = _ROLES.get(str(post.get("role", "")))
        if role is None:
            raise InvalidInput(f"posts[{i}].role must be user, assistant, bot or system", field="posts")
        message = post.get("message", "")
        if not isinstance(message, str):
            raise InvalidInput(f"posts[{i}].message must be a string", field="posts")
        files = post.get("file_ids") or []
        if not isinstance(files, list):
            raise InvalidInput(f"posts[{i}].file_ids must be a list of file ids", field="posts")
        for n, file_id in enumerate(files):
            check_mattermost_id(file_id, f"posts[{i}].file_ids[{n}]")
        messages.append(llm_pb2.Message(role=role, parts=[llm_pb2.Part(text=message)]))
        file_ids.append(tuple(files))
    return messages, file_ids


def _optional_id(body: dict[str, Any], field: str) -> str:
    value = body.get(field) or ""
    check_optional_mattermost_id(value, field)
    return str(value)


def completion_request(
    bridge: BridgeRequest, agent: registry_pb2.Agent, *, operation: str, send_json_schema: bool
) -> llm_pb2.CompletionRequest:
    """The llm request for ``bridge`` answered by ``agent`` (its service, model and instructions);
    ``json_output_format`` goes to the provider only when ``send_json_schema``."""
    messages = list(bridge.messages)
    if agent.custom_instructions and not (messages and messages[0].role == llm_pb2.ROLE_SYSTEM):
        system = llm_pb2.Message(role=llm_pb2.ROLE_SYSTEM, parts=[llm_pb2.Part(text=agent.custom_instructions)])
        messages.insert(0, system)
    request = llm_pb2.CompletionRequest(
        service_id=agent.service_id,
        model=agent.model,
        messages=messages,
        max_output_tokens=bridge.max_generated_tokens,
        user_id=bridge.user_id,
        agent_username=agent.username,
        operation=bridge.operation or operation,
    )
    if agent.reasoning_enabled:
        request.reasoning.CopyFrom(
            llm_pb2.ReasoningOptions(enabled=True, effort=agent.reasoning_effort, budget_tokens=agent.thinking_budget)
        )
    if bridge.json_output_format is not None and send_json_schema:
        request.json_schema.update(bridge.json_output_format)
    return request


class FenceStripper:
    """Removes the Markdown code fence a model may wrap JSON in (the plugin's structured output
    fallback), as the text streams: the start is held until it shows whether a fence opens, and
    inside a fence the trailing backticks and blanks until the stream ends."""

    def __init__(self) -> None:
        self._head = ""
        self._decided = False
        self._fenced = False
        self._tail = ""

    def feed(self, text: str) -> str:
        """The part of ``text`` that can be passed on now."""
        if not self._decided:
            self._head += text
            start = self._head.lstrip()
            if start.startswith("```"):
                newline = start.find("\n")
                if newline < 0:
                    return ""  # the fence's info string ("json") may go on
                self._fenced, text = True, start[newline + 1 :]
            elif "```".startswith(start):
                return ""  # blanks or backticks only: a fence may still open
            else:
                text = self._head
            self._decided = True
        if not self._fenced:
            return text
        held = self._tail + text
        cut = _closing_fence_start(held)
        self._tail = held[cut:]
        return held[:cut]

    def finish(self) -> str:
        """What is still held once the text ended (nothing when it was the closing fence)."""
        if not self._decided:
            return self._head
        return "" if self._tail.strip() == "```" else self._tail


def _closing_fence_start(text: str) -> int:
    # Where what may be the closing fence begins: blanks, at most three backticks, blanks.
    body = text.rstrip()
    ticks = len(body) - len(body.rstrip("`"))
    return len(body[: len(body) - min(ticks, 3)].rstrip())


class EventRenderer:
    """Turns stream events into ``TextStreamEvent`` dicts, adding ``reasoning_end`` (Type 5)
    when reasoning gives way to anything else, as the plugin's stream does."""

    def __init__(self, *, strip_fences: bool = False) -> None:
        self._reasoning: list[str] = []
        self._signature = ""
        self._reasoning_open = False
        self._fences = FenceStripper() if strip_fences else None

    def _text(self, kind: str | None, event: llm_pb2.StreamEvent) -> list[dict[str, Any]]:
        """Text items: the delta, and what the fence stripper still holds once the stream ends."""
        if self._fences is None:
            return [{"Type": TEXT, "Value": event.text_delta.text}] if kind == "text_delta" else []
        text = ""
        if kind == "text_delta":
            text = self._fences.feed(event.text_delta.text)
        elif kind in ("error", "done"):
            text = self._fences.finish()
        return [{"Type": TEXT, "Value": text}] if text else []

    def render(self, event: llm_pb2.StreamEvent) -> list[dict[str, Any]]:
        """The plugin's ``TextStreamEvent`` dicts for one stream event."""
        kind = event.WhichOneof("event")
        out: list[dict[str, Any]] = []
        if kind == "reasoning_delta":
            self._reasoning_open = True
            self._reasoning.append(event.reasoning_delta.text)
            if event.reasoning_delta.signature:
                self._signature = event.reasoning_delta.signature
            out.append({"Type": REASONING, "Value": event.reasoning_delta.text})
            return out
        if self._reasoning_open:
            self._reasoning_open = False
            out.append(
                {"Type": REASONING_END, "Value": {"Text": "".join(self._reasoning), "Signature": self._signature}}
            )
        out += self._text(kind, event)
        if kind == "tool_call":
            call = event.tool_call
            arguments: Any = call.raw_arguments
            if call.valid and call.raw_arguments.strip():
                arguments = json.loads(call.raw_arguments)
            out.append({"Type": TOOL_CALLS, "Value": [{"id": call.id, "name": call.name, "arguments": arguments}]})
        elif kind == "annotation":
            a = event.annotation
            value = {"type": "url_citation", "url": a.url, "title": a.title}
            out.append(
                {"Type": ANNOTATIONS, "Value": [{**value, "start_index": a.start_index, "end_index": a.end_index}]}
            )
        elif kind == "usage":
            u = event.usage
            usage = {
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cached_read_tokens": u.cached_read_tokens,
                "reasoning_tokens": u.reasoning_tokens,
            }
            out.append({"Type": USAGE, "Value": usage})
        elif kind == "error":
            out.append({"Type": ERROR, "Value": event.error.message})
        elif kind == "done":
            out.append({"Type": END, "Value": None})
        return out
