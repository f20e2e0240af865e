"""A fake Cohere v2 Chat API speaking the real streaming wire format over loopback HTTP.

Events are SSE with the event name in ``event:`` and the same name in the JSON ``type``, as
``POST /v2/chat`` sends them. Requests without the expected bearer key get Cohere's 401.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer, sse

API_KEY = "co-fake-test-key-0123456789abcdef"
MODELS = ("command-a-03-2025", "command-r7b-12-2024")


def _ev(kind: str, **fields: Any) -> bytes:
    return sse(kind, {"type": kind, **fields})


def _start() -> list[bytes]:
    message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    return [_ev("message-start", id="msg-fake", delta={"message": message})]


def _content(tokens: list[str], *, close: bool = True) -> list[bytes]:
    return [
        _ev("content-start", index=0, delta={"message": {"content": {"type": "text", "text": ""}}}),
        *(_ev("content-delta", index=0, delta={"message": {"content": {"text": t}}}) for t in tokens),
        *([_ev("content-end", index=0)] if close else []),
    ]


def _end(finish_reason: str, output_tokens: int) -> list[bytes]:
    usage = {
        "billed_units": {"input_tokens": 9, "output_tokens": output_tokens},
        "tokens": {"input_tokens": 70, "output_tokens": output_tokens},
    }
    return [_ev("message-end", delta={"finish_reason": finish_reason, "usage": usage})]


def text(tokens: list[str]) -> Reply:
    """A plain answer, one content-delta per token."""
    return Reply(chunks=(*_start(), *_content(tokens), *_end("COMPLETE", len(tokens))))


def tool_call(call_id: str, name: str, argument_chunks: list[str], *, plan: tuple[str, ...] = ()) -> Reply:
    """A tool plan, then one tool call whose arguments arrive in pieces."""
    chunks = [
        *_start(),
        *(_ev("tool-plan-delta", delta={"message": {"tool_plan": p}}) for p in plan),
        _ev(
            "tool-call-start",
            index=0,
            delta={
                "message": {
                    "tool_calls": {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                }
            },
        ),
        *(
            _ev("tool-call-delta", index=0, delta={"message": {"tool_calls": {"function": {"arguments": c}}}})
            for c in argument_chunks
        ),
        _ev("tool-call-end", index=0),
        *_end("TOOL_CALL", 12),
    ]
    return Reply(chunks=tuple(chunks))


def cited(answer: str, url: str, title: str) -> Reply:
    """An answer with one citation over all of it, sourced from a tool result with a URL."""
    citation = {
        "start": 0,
        "end": len(answer),
        "text": answer,
        "sources": [{"type": "tool", "id": "web_search_1:0", "tool_output": {"url": url, "title": title}}],
    }
    return Reply(
        chunks=(
            *_start(),
            *_content([answer]),
            _ev("citation-start", index=0, delta={"message": {"citations": citation}}),
            _ev("citation-end", index=0),
            *_end("COMPLETE", 5),
        )
    )


def http_error(status: int, message: str, *, retry_after: str | None = None) -> Reply:
    """A non-200 answer with Cohere's ``{"message": ...}`` body."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, chunks=(json.dumps({"message": message}).encode(),), headers=headers)


def error_mid_stream(tokens: list[str]) -> Reply:
    """Some text, then ``message-end`` with ``finish_reason: ERROR``."""
    return Reply(chunks=(*_start(), *_content(tokens, close=False), *_end("ERROR", len(tokens))))


def stall(tokens: list[str]) -> Reply:
    """Some text, then silence on an open connection."""
    return Reply(chunks=(*_start(), *_content(tokens, close=False)), stall=True)


def malformed(tokens: list[str]) -> Reply:
    """Some text, then an event whose data is not JSON."""
    return Reply(chunks=(*_start(), *_content(tokens, close=False), b"event: content-delta\ndata: {oops\n\n"))


def long_line() -> Reply:
    """An event whose data line never ends (up to 256 MiB, or until the client hangs up)."""
    return Reply(chunks=(*_start(), b"event: content-delta\ndata: "), endless=b"x" * 65536)


class FakeCohere(ScriptedServer):
    """``POST /v2/chat`` plays the script; ``GET /v1/models`` lists ``MODELS`` one per page."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(lambda _req: text(["Hello", " from", " Cohere"]), gate=self._gate_request)
        self.api_key = api_key

    def _gate_request(self, req: RecordedRequest) -> Reply | None:
        if req.header("Authorization") != f"Bearer {self.api_key}":
            return http_error(401, "invalid api token")
        if req.method == "POST" and req.json().get("model") not in MODELS:
            model = req.json().get("model")
            return http_error(
                404,
                f"model '{model}' not found, make sure the correct model ID was used and that you have "
                "access to the model.",
            )
        if req.method == "GET" and req.path == "/v1/models":
            start = int(req.query.get("page_token", "0"))
            page: dict[str, Any] = {"models": [{"name": m, "endpoints": ["chat"]} for m in MODELS[start : start + 1]]}
            if start + 1 < len(MODELS):
                page["next_page_token"] = str(start + 1)
            return Reply(content_type="application/json", chunks=(json.dumps(page).encode(),))
        return None
