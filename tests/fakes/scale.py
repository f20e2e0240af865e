"""A fake Scale GenAI Platform chat-completions endpoint (OpenAI streaming wire format).

It checks Scale's auth the way the real gateway does: ``x-api-key`` must hold the key, the
ScaleGov account comes in ``x-selected-account-id``, and a request carrying an ``Authorization``
header is refused. Script replies with the builders below; every request is recorded.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted import RecordedRequest, Reply, ScriptedServer

API_KEY = "scale-fake-key-0123456789abcdef"
ACCOUNT_ID = "acct_fake_123"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "openai/gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(doc)}\n\n".encode()


def _usage(prompt: int = 9, completion: int = 4) -> bytes:
    doc = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return f"data: {json.dumps(doc)}\n\n".encode()


def text(*pieces: str) -> Reply:
    """An answer in ``len(pieces)`` deltas, the finish chunk, usage and ``[DONE]``."""
    chunks = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({"content": p}) for p in pieces]
    chunks += [_chunk({}, "stop"), _usage(), b"data: [DONE]\n\n"]
    return Reply(chunks=tuple(chunks))


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> Reply:
    """One tool call whose arguments arrive in two fragments."""
    half = len(arguments) // 2
    first = {
        "tool_calls": [
            {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments[:half]},
            }
        ]
    }
    second = {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]}
    return Reply(chunks=(_chunk(first), _chunk(second), _chunk({}, "tool_calls"), _usage(), b"data: [DONE]\n\n"))


def http_error(status: int, message: str, retry_after: str = "") -> Reply:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Reply(status=status, chunks=(json.dumps({"detail": message}).encode(),), headers=headers)


def stall(first: str = "") -> Reply:
    chunks = (_chunk({"content": first}),) if first else ()
    return Reply(chunks=chunks, stall=True)


class FakeScale(ScriptedServer):
    def __init__(self) -> None:
        super().__init__(lambda _req: text("Scale", " says", " hi"), gate=self._check_auth)

    def _check_auth(self, request: RecordedRequest) -> Reply | None:
        if request.header("authorization"):
            return http_error(400, "Authorization header is not accepted; use x-api-key")
        if request.header("x-api-key") != API_KEY:
            return http_error(401, "Invalid API key")
        if request.path.endswith("/models"):
            body = {
                "object": "list",
                "data": [{"id": "openai/gpt-4o"}, {"id": "anthropic/claude-sonnet-4-5"}],
            }
            return Reply(chunks=(json.dumps(body).encode(),), content_type="application/json")
        return None
