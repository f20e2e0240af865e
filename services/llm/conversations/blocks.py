"""ContentBlock JSON (the plugin's ``LLM_Turns.Content`` shape) built from model output, turned
back into provider messages, and filtered for readers who are not the requester."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from services.llm.conversations.model import Block, RoundOutput, ToolStatus, Turn, TurnRole
from services.llm.providers.base import (
    Message,
    Part,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    ToolResult,
)

# Shown to the model instead of a tool result the requester did not share into a channel.
REDACTED_RESULT = "[result not shared by the requester]"


def now_ms() -> int:
    """Now, in milliseconds since the epoch (the plugin's timestamps)."""
    return int(time.time() * 1000)


def text_block(text: str) -> Block:
    """A text block."""
    return {"type": "text", "text": text}


def tool_use_block(call: ToolCall, status: ToolStatus, *, shared: bool, server_origin: str = "") -> Block:
    """A ``tool_use`` block for a call in ``status`` (its input as parsed, else as produced)."""
    block: Block = {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": call.arguments if call.arguments is not None else call.raw_arguments,
        "status": str(status),
        "shared": shared,
    }
    if server_origin:
        block["server_origin"] = server_origin
    return block


def tool_result_block(tool_use_id: str, name: str, content: str, *, is_error: bool, shared: bool) -> Block:
    """A ``tool_result`` block, private to the requester unless ``shared``."""
    block: Block = {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "name": name,
        "content": content,
        "status": str(ToolStatus.ERROR if is_error else ToolStatus.SUCCESS),
        "shared": shared,
    }
    if shared:
        block["decided_at"] = now_ms()
    return block


def assistant_blocks(output: RoundOutput, statuses: dict[str, ToolStatus], *, shared: bool) -> list[Block]:
    """One assistant round as blocks: thinking, text, citations, then the tool calls."""
    blocks: list[Block] = []
    if output.reasoning or output.reasoning_signature:
        blocks.append({"type": "thinking", "text": output.reasoning, "signature": output.reasoning_signature})
    if output.text:
        blocks.append(text_block(output.text))
    if output.annotations:
        citations = [
            {
                "type": "url_citation",
                "url": a.url,
                "title": a.title,
                "start_index": a.start_index,
                "end_index": a.end_index,
            }
            for a in output.annotations
        ]
        blocks.append({"type": "annotations", "citations": citations})
    for call in output.tool_calls:
        blocks.append(tool_use_block(call, statuses.get(call.id, ToolStatus.PENDING), shared=shared))
    return blocks


def tool_call_from_block(block: Block) -> ToolCall:
    """The tool call a ``tool_use`` block records."""
    raw_input = block.get("input")
    if isinstance(raw_input, dict):
        return ToolCall(
            id=str(block.get("id", "")),
            name=str(block.get("name", "")),
            raw_arguments=json.dumps(raw_input),
            arguments=raw_input,
        )
    raw = raw_input if isinstance(raw_input, str) else ""
    return ToolCall(
        id=str(block.get("id", "")), name=str(block.get("name", "")), raw_arguments=raw, arguments=None, valid=False
    )


def blocks_text(blocks: Iterable[Block]) -> str:
    """The text blocks' text, joined."""
    return "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")


def turn_messages(turn: Turn, *, redact_unshared: bool = False) -> list[Message]:
    """Provider messages for one stored turn (files and images are re-read from Mattermost by the
    thread reader, so stored ``file`` blocks become a textual mention only)."""
    parts: list[Part] = []
    for block in turn.content:
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            parts.append(TextPart(str(block["text"])))
        elif kind == "thinking" and (block.get("text") or block.get("signature")):
            parts.append(ReasoningPart(str(block.get("text", "")), signature=str(block.get("signature", ""))))
        elif kind == "tool_use":
            parts.append(tool_call_from_block(block))
        elif kind == "tool_result":
            content = str(block.get("content", ""))
            if redact_unshared and not block.get("shared"):
                content = REDACTED_RESULT
            parts.append(
                ToolResult(
                    tool_call_id=str(block.get("tool_use_id", "")),
                    name=str(block.get("name", "")),
                    content=content,
                    is_error=block.get("status") == ToolStatus.ERROR,
                )
            )
        elif kind == "file" and block.get("filename"):
            parts.append(TextPart(f"[attached file {block['filename']} (File ID {block.get('file_id', '')})]"))
    if not parts:
        return []
    role = {TurnRole.USER: Role.USER, TurnRole.ASSISTANT: Role.ASSISTANT, TurnRole.TOOL_RESULT: Role.TOOL}[turn.role]
    return [Message(role=role, parts=tuple(parts))]


def pending_calls(blocks: Sequence[Block]) -> list[Block]:
    """The ``tool_use`` blocks still waiting for the requester's decision."""
    return [b for b in blocks if b.get("type") == "tool_use" and b.get("status") == ToolStatus.PENDING]


def approval_state(turn: Turn) -> str:
    """``call`` while tool calls wait for a decision, ``result`` while channel results wait to be
    shared, ``done`` once decided, "" when no approval was involved."""
    uses = [b for b in turn.content if b.get("type") == "tool_use"]
    results = [b for b in turn.content if b.get("type") == "tool_result"]
    if any(b.get("status") == ToolStatus.PENDING for b in uses):
        return "call"
    if any(not b.get("shared") and "decided_at" not in b for b in results):
        return "result"
    if any(b.get("status") in (ToolStatus.ACCEPTED, ToolStatus.REJECTED) for b in uses) or results:
        return "done"
    return ""


def strip_for_reader(blocks: Sequence[Block]) -> list[Block]:
    """What someone other than the requester may see: tool inputs and results only when shared."""
    visible: list[Block] = []
    for block in blocks:
        copy: dict[str, Any] = dict(block)
        if copy.get("type") == "tool_use" and not copy.get("shared"):
            copy.pop("input", None)
        if copy.get("type") == "tool_result" and not copy.get("shared"):
            copy.pop("content", None)
        visible.append(copy)
    return visible
