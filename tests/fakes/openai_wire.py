"""Rendering a ``FakeResponse`` as Chat Completions chunks or Responses API events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fakes.openai_script import FakeResponse, split_tokens

LONG_LINE_CHUNK = 64 * 1024
LONG_LINE_LIMIT = 256 * 1024 * 1024  # the fake gives up eventually even if nobody hangs up


async def _write(resp: web.StreamResponse, data: str, event: str = "") -> None:
    frame = (f"event: {event}\n" if event else "") + f"data: {data}\n\n"
    await resp.write(frame.encode())


async def _text_phase(
    resp: web.StreamResponse,
    scripted: FakeResponse,
    token_delay: float,
    send_token: Callable[[str], Awaitable[None]],
    send_error: Callable[[], Awaitable[None]],
) -> bool:
    """Send the text tokens, injecting the scripted trouble; False when the response must end now."""
    for i, token in enumerate([*scripted.tokens, None]):
        if scripted.trouble and i == scripted.after_tokens:
            if scripted.trouble == "error":
                await send_error()
                return False
            if scripted.trouble == "stall":
                await asyncio.Event().wait()  # until the client hangs up (the handler is cancelled)
            if scripted.trouble == "malformed":
                await resp.write(b"data: {this is not json\n\n")
                return False
            if scripted.trouble == "long_line":
                await resp.write(b"data: ")
                sent = 0
                while sent < LONG_LINE_LIMIT:
                    await resp.write(b"x" * LONG_LINE_CHUNK)
                    sent += LONG_LINE_CHUNK
                return False
            if scripted.trouble == "truncate":
                return False
        if token is None:
            return True
        if token_delay and i:
            await asyncio.sleep(token_delay)
        await send_token(token)
    return True


# ---- Chat Completions ------------------------------------------------------------------------


async def play_chat(
    resp: web.StreamResponse, scripted: FakeResponse, body: dict[str, Any], *, flavor: str, token_delay: float
) -> None:
    """Stream ``scripted`` as ``chat.completion.chunk`` objects ending with ``[DONE]``."""
    created = int(time.time())
    model = str(body.get("model") or "deployment")

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None) -> str:
        doc: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            doc["usage"] = usage
        return json.dumps(doc)

    await _write(resp, chunk({"role": "assistant", "content": ""}))
    for piece in scripted.reasoning:
        if flavor == "mistral":
            thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": piece}]}]
            await _write(resp, chunk({"content": thinking}))
        else:
            await _write(resp, chunk({"reasoning_content": piece}))

    async def send_token(token: str) -> None:
        await _write(resp, chunk({"content": token}))

    async def send_error() -> None:
        error = {"message": scripted.error_message, "type": scripted.error_code, "code": scripted.error_code}
        await _write(resp, json.dumps({"error": error}))

    if not await _text_phase(resp, scripted, token_delay, send_token, send_error):
        return
    for index, call in enumerate(scripted.tool_calls):
        if flavor == "mistral":  # Mistral sends each call whole
            function = {"name": call.name, "arguments": call.arguments}
            await _write(resp, chunk({"tool_calls": [{"id": call.id, "function": function, "index": index}]}))
            continue
        opening = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        await _write(resp, chunk({"tool_calls": [opening]}))
        for piece in split_tokens(call.arguments, call.chunks) if call.arguments else []:
            await _write(resp, chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    usage = {
        "prompt_tokens": scripted.usage[0],
        "completion_tokens": scripted.usage[1],
        "total_tokens": sum(scripted.usage),
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 5 if scripted.reasoning else 0},
    }
    if flavor == "mistral":
        await _write(resp, chunk({}, scripted.finish_reason, usage))  # usage rides on the last chunk
    else:
        await _write(resp, chunk({}, scripted.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage"):
            doc = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
            await _write(resp, json.dumps({**doc, "choices": [], "usage": usage}))
    await _write(resp, "[DONE]")


# ---- Responses API ---------------------------------------------------------------------------


async def play_responses(
    resp: web.StreamResponse, scripted: FakeResponse, body: dict[str, Any], *, token_delay: float
) -> None:
    """Stream ``scripted`` as Responses API events ending with ``response.completed``."""
    seq = 0
    response: dict[str, Any] = {
        "id": "resp_fake",
        "object": "response",
        "status": "in_progress",
        "output": [],
    }

    async def emit(kind: str, **fields: Any) -> None:
        nonlocal seq
        seq += 1
        await _write(resp, json.dumps({"type": kind, "sequence_number": seq, **fields}), event=kind)

    await emit("response.created", response=response)
    output_index = 0
    if scripted.reasoning:
        item = {"id": "rs_fake", "type": "reasoning", "summary": []}
        await emit("response.output_item.added", output_index=output_index, item=item)
        await emit("response.reasoning_summary_part.added", item_id="rs_fake", summary_index=0)
        for piece in scripted.reasoning:
            await emit("response.reasoning_summary_text.delta", item_id="rs_fake", summary_index=0, delta=piece)
        text = "".join(scripted.reasoning)
        done_item = {
            **item,
            "summary": [{"type": "summary_text", "text": text}],
            "encrypted_content": "gAAAA-fake-encrypted-reasoning",
        }
        await emit("response.output_item.done", output_index=output_index, item=done_item)
        output_index += 1

    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    await emit("response.output_item.added", output_index=output_index, item=message)

    async def send_token(token: str) -> None:
        await emit(
            "response.output_text.delta",
            item_id="msg_fake",
            output_index=output_index,
            content_index=0,
            delta=token,
        )

    async def send_error() -> None:
        error = {"code": scripted.error_code, "message": scripted.error_message}
        await emit("response.failed", response={**response, "status": "failed", "error": error})

    if not await _text_phase(resp, scripted, token_delay, send_token, send_error):
        return
    for i, ann in enumerate(scripted.annotations):
        annotation = {
            "type": "url_citation",
            "url": ann.url,
            "title": ann.title,
            "start_index": ann.start_index,
            "end_index": ann.end_index,
        }
        await emit(
            "response.output_text.annotation.added",
            item_id="msg_fake",
            output_index=output_index,
            content_index=0,
            annotation_index=i,
            annotation=annotation,
        )
    await emit("response.output_item.done", output_index=output_index, item={**message, "status": "completed"})
    for call in scripted.tool_calls:
        output_index += 1
        item = {
            "id": f"fc_{call.id}",
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": "",
        }
        await emit("response.output_item.added", output_index=output_index, item=item)
        for piece in split_tokens(call.arguments, call.chunks) if call.arguments else []:
            await emit(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=output_index,
                delta=piece,
            )
        await emit(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=output_index,
            arguments=call.arguments,
        )
        await emit("response.output_item.done", output_index=output_index, item={**item, "arguments": call.arguments})
    usage = {
        "input_tokens": scripted.usage[0],
        "input_tokens_details": {"cached_tokens": 3},
        "output_tokens": scripted.usage[1],
        "output_tokens_details": {"reasoning_tokens": 5 if scripted.reasoning else 0},
        "total_tokens": sum(scripted.usage),
    }
    if scripted.finish in ("length", "content_filter"):
        reason = "max_output_tokens" if scripted.finish == "length" else "content_filter"
        final = {**response, "status": "incomplete", "incomplete_details": {"reason": reason}, "usage": usage}
        await emit("response.incomplete", response=final)
        return
    await emit("response.completed", response={**response, "status": "completed", "usage": usage})
