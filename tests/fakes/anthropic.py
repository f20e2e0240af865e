"""A fake Anthropic Messages API speaking the real streaming wire format over loopback HTTP.

Script replies with the builders below (``text``, ``tool_call``, ``thinking``, ``web_search``,
``http_error``, ``error_mid_stream``, ``stall``, ``malformed``); unscripted requests get a short
text answer. Every request is recorded, and a request without the expected ``x-api-key`` and
``anthropic-version`` headers is refused with 401 as the real API does.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer, sse

API_KEY = "sk-ant-fake-test-key-0123456789"
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")


def _start(input_tokens: int = 12) -> list[bytes]:
    message = {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, "cache_read_input_tokens": 3},
    }
    return [
        sse("message_start", {"type": "message_start", "message": message}),
        sse("ping", {"type": "ping"}),
    ]


def _text_block(index: int, tokens: list[str]) -> list[bytes]:
    return [
        sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        ),
        *(
            sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}},
            )
            for t in tokens
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _end(stop_reason: str, output_tokens: int) -> list[bytes]:
    return [
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


def text(tokens: list[str], *, stop_reason: str = "end_turn") -> Reply:
    """A plain answer streamed as one text_delta per token."""
    return Reply(chunks=(*_start(), *_text_block(0, tokens), *_end(stop_reason, len(tokens))))


def tool_call(call_id: str, name: str, json_chunks: list[str], *, preface: str = "Let me check.") -> Reply:
    """Some text, then a tool_use block whose input arrives as partial JSON pieces."""
    tool = [
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}},
            },
        ),
        *(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": c},
                },
            )
            for c in json_chunks
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]
    return Reply(chunks=(*_start(), *_text_block(0, [preface]), *tool, *_end("tool_use", 20)))


def thinking(thoughts: list[str], signature: str, tokens: list[str]) -> Reply:
    """A thinking block (thinking_delta pieces, then its signature_delta) followed by the answer."""
    block = [
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": ""},
            },
        ),
        *(
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": t},
                },
            )
            for t in thoughts
        ),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": signature},
            },
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]
    return Reply(chunks=(*_start(), *block, *_text_block(1, tokens), *_end("end_turn", 30)))


def web_search(query: str, url: str, title: str, cited: str, tail: str) -> Reply:
    """A server-side web search, its results, then a cited text block and an uncited one."""
    chunks = [
        *_start(),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {},
                },
            },
        ),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps({"query": query})},
            },
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "web_search_tool_result",
                    "tool_use_id": "srvtoolu_1",
                    "content": [{"type": "web_search_result", "url": url, "title": title, "encrypted_content": "EqQ"}],
                },
            },
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {"type": "text", "text": "", "citations": []},
            },
        ),
        sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {
                    "type": "citations_delta",
                    "citation": {
                        "type": "web_search_result_location",
                        "url": url,
                        "title": title,
                        "cited_text": cited,
                        "encrypted_index": "Eo8",
                    },
                },
            },
        ),
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": cited}},
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
        *_text_block(3, [tail]),
        *_end("end_turn", 40),
    ]
    return Reply(chunks=tuple(chunks))


def http_error(status: int, error_type: str, message: str, *, retry_after: str | None = None) -> Reply:
    """A non-200 answer with Anthropic's error body (and ``retry-after`` when given)."""
    body = json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(status=status, chunks=(body,), headers=headers)


def error_mid_stream(tokens: list[str], error_type: str = "overloaded_error", message: str = "Overloaded") -> Reply:
    """Some text, then an ``error`` event, as the API does when it fails after answering 200."""
    error = sse("error", {"type": "error", "error": {"type": error_type, "message": message}})
    return Reply(chunks=(*_start(), *_text_block(0, tokens)[:-1], error))


def stall(tokens: list[str]) -> Reply:
    """Some text, then silence on an open connection."""
    return Reply(chunks=(*_start(), *_text_block(0, tokens)[:-1]), stall=True)


def malformed(tokens: list[str]) -> Reply:
    """Some text, then an event whose data is not JSON."""
    return Reply(chunks=(*_start(), *_text_block(0, tokens)[:-1], b"event: content_block_delta\ndata: {nope\n\n"))


def long_line() -> Reply:
    """An event whose data line never ends (up to 256 MiB, or until the client hangs up)."""
    return Reply(chunks=(*_start(), b"event: content_block_delta\ndata: "), endless=b"x" * 65536)


def truncated(tokens: list[str]) -> Reply:
    """Some text, then the body ends without ``message_stop``."""
    return Reply(chunks=(*_start(), *_text_block(0, tokens)))


class FakeAnthropic(ScriptedServer):
    """``POST /v1/messages`` plays the script; ``GET /v1/models`` lists ``MODELS`` in pages of one."""

    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__(lambda _req: text(["Hello", " from", " Claude"]), gate=self._gate_request)
        self.api_key = api_key

    def _gate_request(self, req: RecordedRequest) -> Reply | None:
        if req.header("x-api-key") != self.api_key or not req.header("anthropic-version"):
            return http_error(401, "authentication_error", "invalid x-api-key")
        if req.method == "POST" and req.json().get("model") not in MODELS:
            return http_error(404, "not_found_error", f"model: {req.json().get('model')}")
        if req.method == "GET" and req.path == "/v1/models":
            return Reply(content_type="application/json", chunks=(self._models_page(req.query),))
        return None

    @staticmethod
    def _models_page(query: dict[str, str]) -> bytes:
        start = MODELS.index(query["after_id"]) + 1 if "after_id" in query else 0
        page: dict[str, Any] = {"data": [{"type": "model", "id": m} for m in MODELS[start : start + 1]]}
        page["has_more"] = start + 1 < len(MODELS)
        page["last_id"] = MODELS[start]
        return json.dumps(page).encode()
