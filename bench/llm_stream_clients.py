"""The llm_stream benchmark's load generator: one client per target kind, a closed-loop driver,
and the per-level figures (TTFT, total time, tokens, CPU of the target's processes).

Every client returns ``(ttft, total, chars)`` for one stream, timing from just before the
request is sent to the first text token and to the end of the stream; ``chars`` is the length of
the text received. Text, not messages, is counted because our service coalesces tokens that
reach it in one socket read (one message may carry several); the table turns characters back
into tokens with the direct baseline's characters per stream.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import grpc
import psutil
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

StreamFn = Callable[[], Awaitable[tuple[float, float, int]]]
PROMPT = "Say something about streaming."


async def _sse_stream(
    http: aiohttp.ClientSession, url: str, body: dict, headers: dict[str, str], text_of: Callable[[dict], str]
) -> tuple[float, float, int]:
    started = time.perf_counter()
    ttft = 0.0
    chars = 0
    async with http.post(url, json=body, headers=headers) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
        buffer = b""
        async for chunk in resp.content.iter_any():
            buffer += chunk
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                for line in raw.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if not data or data == b"[DONE]":
                        continue
                    text = text_of(json.loads(data))
                    if text:
                        if not chars:
                            ttft = time.perf_counter() - started
                        chars += len(text)
    return ttft, time.perf_counter() - started, chars


def _chat_token(doc: dict) -> str:
    choices = doc.get("choices") or []
    return str((choices[0].get("delta") or {}).get("content") or "") if choices else ""


def _responses_token(doc: dict) -> str:
    return str(doc.get("delta") or "") if doc.get("type") == "response.output_text.delta" else ""


def _bridge_token(doc: dict) -> str:
    return str(doc.get("Value") or "") if doc.get("Type") == 0 else ""


def chat_client(http: aiohttp.ClientSession, base_url: str, headers: dict[str, str] | None = None) -> StreamFn:
    """OpenAI Chat Completions streaming (the fake itself, LiteLLM, Portkey)."""
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    return lambda: _sse_stream(http, f"{base_url}/chat/completions", body, headers or {}, _chat_token)


def responses_client(http: aiohttp.ClientSession, base_url: str) -> StreamFn:
    """OpenAI Responses API streaming (the fake itself)."""
    body = {"model": "gpt-4o", "stream": True, "input": PROMPT}
    return lambda: _sse_stream(http, f"{base_url}/responses", body, {}, _responses_token)


def bridge_client(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> StreamFn:
    """The gateway's bridge SSE route (gateway → llm → fake)."""
    body = {"posts": [{"role": "user", "message": PROMPT}]}
    return lambda: _sse_stream(http, url, body, headers, _bridge_token)


def grpc_client(channel: grpc.aio.Channel, service_id: str, metadata: Sequence[tuple[str, str]]) -> StreamFn:
    """LLM.StreamComplete on the llm service."""
    stub = llm_pb2_grpc.LLMStub(channel)
    message = llm_pb2.Message(role=llm_pb2.ROLE_USER, parts=[llm_pb2.Part(text=PROMPT)])
    request = llm_pb2.StreamCompleteRequest(
        request=llm_pb2.CompletionRequest(service_id=service_id, messages=[message], operation="bench"),
    )

    async def one() -> tuple[float, float, int]:
        started = time.perf_counter()
        ttft = 0.0
        chars = 0
        async for reply in stub.StreamComplete(request, metadata=metadata, timeout=60):
            for event in reply.events:
                if event.HasField("text_delta"):
                    if not chars:
                        ttft = time.perf_counter() - started
                    chars += len(event.text_delta.text)
                elif event.HasField("error"):
                    raise RuntimeError(event.error.message)
        return ttft, time.perf_counter() - started, chars

    return one


@dataclass
class LevelResult:
    target: str
    concurrency: int
    streams: int
    wall: float
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    chars: int = 0  # text received, all streams
    errors: int = 0
    cpu_seconds: float = 0.0
    first_error: str = ""

    def p(self, samples: list[float], pct: float) -> float:
        if not samples:
            return float("nan")
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]

    @property
    def ttft_p50(self) -> float:
        return self.p(self.ttft, 50)

    @property
    def ttft_p99(self) -> float:
        return self.p(self.ttft, 99)

    @property
    def total_p50(self) -> float:
        return statistics.median(self.total) if self.total else float("nan")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User+system CPU of the processes and their children (LiteLLM workers)."""
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
    return total


async def run_level(target: str, fn: StreamFn, concurrency: int, streams: int, pids: Sequence[int]) -> LevelResult:
    """``streams`` streams through ``fn`` with ``concurrency`` in flight (closed loop)."""
    result = LevelResult(target, concurrency, streams, 0.0)
    remaining = streams

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                ttft, total, chars = await fn()
            except Exception as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"[:200]
                continue
            result.ttft.append(ttft)
            result.total.append(total)
            result.chars += chars

    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - started
    result.cpu_seconds = cpu_seconds(pids) - cpu_before
    return result
