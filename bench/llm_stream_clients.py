"""The llm_stream benchmark's load generator: one client per target kind, a closed-loop driver,
and the per-level figures (TTFT, total time, tokens, CPU of the target's processes, and how busy
the generator and its CPU were, which tells whether the generator bounded the level).

Every client returns ``(ttft, total, chars)`` for one stream, timing from just before the
request is sent to the first text token and to the end of the stream; ``chars`` is the length of
the text received. Text, not messages, is counted because our service coalesces tokens that
reach it in one socket read (one message may carry several); the table turns characters back
into tokens with the direct baseline's characters per stream. SSE events are decoded with orjson:
the generator shares its core with the fake upstream, so its own cost per event is kept small.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import orjson
import psutil
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from bench.stats import percentile

StreamFn = Callable[[], Awaitable[tuple[float, float, int]]]
PROMPT = "Say something about streaming."
# A level whose generator (this process) or its CPU is this busy may be bounded by it.
SATURATED = 0.9


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
                    text = text_of(orjson.loads(data))
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
    repeat: int
    wall: float = 0.0
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    chars: int = 0  # text received, all streams
    errors: int = 0
    cpu_seconds: float = 0.0  # the system under test's processes
    generator_cpu: float = 0.0  # this process (the load generator), as a fraction of one core
    # The generator's event loop thread running or waiting for a CPU, as a fraction of the level:
    # near 1 it could not keep up, whether from its own work or from others on its CPU.
    generator_demand: float = 0.0
    cpu0_busy: float = 0.0  # the auxiliary CPU's utilisation, all processes on it (shared machine)
    first_error: str = ""

    @property
    def ttft_p50(self) -> float:
        return percentile(self.ttft, 50)

    @property
    def ttft_p99(self) -> float:
        return percentile(self.ttft, 99)

    @property
    def total_p50(self) -> float:
        return statistics.median(self.total) if self.total else float("nan")

    @property
    def rps(self) -> float:
        return len(self.ttft) / self.wall if self.wall else 0.0

    @property
    def cpu_ms_per_stream(self) -> float:
        return self.cpu_seconds / len(self.ttft) * 1000 if self.ttft and self.cpu_seconds else float("nan")

    @property
    def generator_saturated(self) -> bool:
        """The generator, not the target, may have bounded this level."""
        return self.generator_demand >= SATURATED


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


def _cpu0() -> tuple[float, float]:
    """(busy, total) seconds of CPU 0 since boot."""
    times = psutil.cpu_times(percpu=True)[0]
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times)
    return total - idle, total


def _loop_thread_demand() -> float:
    """Seconds this thread (the event loop's) has run plus waited on a run queue (schedstat)."""
    try:
        ran, waited, _ = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()
    except (OSError, ValueError):
        return float("nan")  # no schedstats here: the level is not flagged
    return (int(ran) + int(waited)) / 1e9


async def run_level(
    target: str, fn: StreamFn, concurrency: int, *, seconds: float, max_streams: int, pids: Sequence[int], repeat: int
) -> LevelResult:
    """A closed loop of ``concurrency`` streams through ``fn`` after one warm-up round at that
    concurrency; new streams start until ``seconds`` have passed or ``max_streams`` started."""
    await asyncio.gather(*(fn() for _ in range(concurrency)), return_exceptions=True)
    result = LevelResult(target, concurrency, repeat)
    started_streams = 0
    me = psutil.Process()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal started_streams
        while started_streams < max_streams and time.perf_counter() < deadline:
            started_streams += 1
            try:
                ttft, total, chars = await fn()
            except Exception as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"[:200]
                continue
            result.ttft.append(ttft)
            result.total.append(total)
            result.chars += chars

    cpu_before, mine_before, cpu0_before, demand_before = (
        cpu_seconds(pids),
        me.cpu_times(),
        _cpu0(),
        _loop_thread_demand(),
    )
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - started
    result.cpu_seconds = cpu_seconds(pids) - cpu_before
    mine, cpu0 = me.cpu_times(), _cpu0()
    result.generator_cpu = (mine.user + mine.system - mine_before.user - mine_before.system) / result.wall
    result.cpu0_busy = (cpu0[0] - cpu0_before[0]) / max(1e-9, cpu0[1] - cpu0_before[1])
    result.generator_demand = (_loop_thread_demand() - demand_before) / result.wall
    return result
