"""What a fake OpenAI-style upstream answers: scripted responses, protocol-neutral.

One ``FakeResponse`` describes an answer (text tokens, reasoning, tool calls, usage) and the
trouble to inject (an HTTP error, an error or a stall or garbage after K tokens, an over-long
line). The fake server renders it in whichever wire format the request's endpoint speaks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

DEFAULT_ANSWER = (
    "Mattermost agents stream their answers token by token so people can read along while the "
    "model is still thinking about the rest of the reply."
)


def split_tokens(text: str, count: int) -> list[str]:
    """``text`` cut into ``count`` nearly equal pieces that join back to it."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


@dataclass(frozen=True)
class FakeToolCall:
    name: str
    arguments: str  # raw JSON text (may be deliberately invalid)
    id: str = "call_abc123"
    chunks: int = 3  # how many deltas the arguments are split across


@dataclass(frozen=True)
class FakeAnnotation:
    url: str
    title: str = ""
    start_index: int = 0
    end_index: int = 0


@dataclass(frozen=True)
class FakeResponse:
    """One scripted upstream answer. Build with the classmethods; tweak with ``dataclasses.replace``."""

    tokens: tuple[str, ...] = ()
    reasoning: tuple[str, ...] = ()
    tool_calls: tuple[FakeToolCall, ...] = ()
    annotations: tuple[FakeAnnotation, ...] = ()
    usage: tuple[int, int] = (11, 7)  # input, output tokens
    finish: str = ""  # "" → derived ("tool_calls" when tool calls, else "stop"); "length" etc.
    # HTTP-level failure instead of a stream
    status: int = 200
    error_body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # in-stream trouble, injected after `after_tokens` text tokens
    trouble: str = ""  # "", "error", "stall", "malformed", "long_line", "truncate"
    after_tokens: int = 0
    error_code: str = "server_error"
    error_message: str = "The server had an error while processing your request."
    # timing (None: the server's defaults)
    ttft: float | None = None
    token_delay: float | None = None
    # Set: the answer starts only once the test sets this event (after the response headers).
    hold: asyncio.Event | None = field(default=None, compare=False)

    @classmethod
    def text(cls, text: str = DEFAULT_ANSWER, *, tokens: int = 5, **kw: Any) -> FakeResponse:
        return cls(tokens=tuple(split_tokens(text, tokens)), **kw)

    @classmethod
    def tool_call(cls, name: str, arguments: str, *, chunks: int = 3, call_id: str = "call_abc123", **kw: Any):
        return cls(tool_calls=(FakeToolCall(name, arguments, id=call_id, chunks=chunks),), **kw)

    @classmethod
    def with_reasoning(cls, reasoning: str, text: str = "42", *, tokens: int = 2, **kw: Any) -> FakeResponse:
        return cls(reasoning=tuple(split_tokens(reasoning, 3)), tokens=tuple(split_tokens(text, tokens)), **kw)

    @classmethod
    def http_error(
        cls, status: int, body: dict[str, Any] | None = None, *, retry_after: str | None = None
    ) -> FakeResponse:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls(status=status, error_body=body or {"error": {"message": f"HTTP {status}"}}, headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: str = "1") -> FakeResponse:
        return cls.http_error(
            429,
            {
                "error": {
                    "message": "Rate limit reached for requests",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                }
            },
            retry_after=retry_after,
        )

    @classmethod
    def insufficient_quota(cls) -> FakeResponse:
        return cls.http_error(
            429,
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
        )

    @classmethod
    def failing_after(cls, k: int, *, tokens: int = 6, **kw: Any) -> FakeResponse:
        return cls.text(tokens=tokens, trouble="error", after_tokens=k, **kw)

    @classmethod
    def stalling_after(cls, k: int, *, tokens: int = 6, **kw: Any) -> FakeResponse:
        return cls.text(tokens=tokens, trouble="stall", after_tokens=k, **kw)

    @classmethod
    def malformed_after(cls, k: int, *, tokens: int = 6, **kw: Any) -> FakeResponse:
        return cls.text(tokens=tokens, trouble="malformed", after_tokens=k, **kw)

    @classmethod
    def long_line(cls, **kw: Any) -> FakeResponse:
        return cls.text(tokens=3, trouble="long_line", after_tokens=0, **kw)

    @classmethod
    def truncated_after(cls, k: int, *, tokens: int = 6, **kw: Any) -> FakeResponse:
        return cls.text(tokens=tokens, trouble="truncate", after_tokens=k, **kw)

    @property
    def finish_reason(self) -> str:
        return self.finish or ("tool_calls" if self.tool_calls else "stop")
