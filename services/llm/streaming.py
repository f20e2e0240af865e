"""The streaming engine every provider runs under: retries, the stall watchdog, and error shaping.

Rules (DESIGN.md, "Streaming semantics"):
- a retryable ``ProviderError`` is retried with backoff only while nothing has been yielded yet;
  once a token went out, nothing is retried silently;
- a stream that sends nothing for ``stall_timeout`` seconds is ended: the upstream generator is
  closed (which drops its socket) and the consumer gets ``StreamError`` then ``Done(ERROR)``;
- errors after the first event become ``StreamError`` + ``Done(ERROR)``; the consumer keeps the
  partial output. Errors before it are raised for the servicer to map.

The engine is plain async-generator chaining: it pulls one event from the provider each time its
consumer pulls one, so a slow consumer slows the upstream read (TCP backpressure) and nothing is
buffered without bound. Only the time spent waiting on the provider counts towards a stall: time
the consumer takes (a slow client) is backpressure, not silence.

The watchdog is one re-armed timer per stream (``_StallWatchdog``), not an ``asyncio.timeout``
per event: that allocated a timeout, a timer handle and a heap entry for every token, a
measurable share of the service's CPU at 50 tokens per answer and hundreds of answers a second.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import cast

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    Provider,
    ProviderError,
    ReasoningDelta,
    StopReason,
    StreamError,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
)

logger = logging.getLogger(__name__)


STALLED = "stalled"  # StreamError.code of a stream the watchdog ended


class _Stalled(Exception):
    """The upstream sent nothing for the stall timeout."""


async def stream_completion(
    provider: Provider,
    request: CompletionRequest,
    *,
    max_attempts: int = 3,
    base_backoff: float = 0.5,
    max_backoff: float = 8.0,
    stall_timeout: float | None = None,
) -> AsyncGenerator[Event, None]:
    """Normalised events for ``request``, always ending with exactly one ``Done``.

    Raises ``ProviderError`` (non-retryable, or retries exhausted) before the first event.
    ``stall_timeout`` defaults to the service's ``streaming_timeout_seconds``.
    """
    timeout = float(stall_timeout if stall_timeout is not None else provider.settings.streaming_timeout_seconds)
    watchdog = _StallWatchdog(timeout)
    try:
        try:
            upstream, first = await _first_event(
                provider,
                request,
                watchdog,
                max_attempts=max_attempts,
                base_backoff=base_backoff,
                max_backoff=max_backoff,
            )
        except _Stalled:
            for stall_event in _stall_events(timeout):
                yield stall_event
            return
        if first is None:
            yield Done(StopReason.END_TURN)
            return

        try:
            event = first
            while True:
                yield event
                if type(event) is Done:
                    return
                try:
                    event = await watchdog.next(upstream)
                except StopAsyncIteration:
                    yield Done(StopReason.END_TURN)  # a provider that forgot its Done still ends cleanly
                    return
                except _Stalled:
                    for stall_event in _stall_events(timeout):
                        yield stall_event
                    return
                except ProviderError as exc:
                    logger.warning(
                        "provider %s failed mid-stream (status %s, %s)",
                        provider.settings.id,
                        exc.status,
                        exc.code or "no code",
                    )
                    yield StreamError(exc.error_class, exc.message, retryable=exc.retryable, code=exc.code)
                    yield Done(StopReason.ERROR)
                    return
                if type(event) is StreamError:
                    yield event
                    yield Done(StopReason.ERROR)
                    return
        finally:
            # Runs on normal end, on error, and when our consumer stops early (aclose/cancel): the
            # provider generator's own finally then closes the HTTP response, dropping the socket.
            await upstream.aclose()
    finally:
        watchdog.close()


async def _first_event(
    provider: Provider,
    request: CompletionRequest,
    watchdog: _StallWatchdog,
    *,
    max_attempts: int,
    base_backoff: float,
    max_backoff: float,
) -> tuple[AsyncGenerator[Event, None], Event | None]:
    """The upstream with its first event (None when it ended without one), a retryable
    ``ProviderError`` before it retried with backoff. A failure (the last ``ProviderError``, or
    ``_Stalled``) is raised with that attempt's upstream closed."""
    attempt = 0
    while True:
        attempt += 1
        upstream = cast(AsyncGenerator[Event, None], provider.stream(request))
        try:
            return upstream, await watchdog.next(upstream)
        except StopAsyncIteration:
            return upstream, None
        except ProviderError as exc:
            await upstream.aclose()
            if not exc.retryable or attempt >= max_attempts:
                raise
            delay = _backoff(attempt, exc.retry_after, base_backoff, max_backoff)
            logger.info(
                "provider %s failed before the first token (status %s, %s); retry %d/%d in %.2fs",
                provider.settings.id,
                exc.status,
                exc.code or "no code",
                attempt,
                max_attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        except BaseException:
            await upstream.aclose()
            raise


class _StallWatchdog:
    """Ends a wait on the upstream that lasts ``timeout`` seconds, with one timer per stream.

    Each wait records when it started; the timer, when it fires, cancels the waiting task only if
    the current wait is that old, and otherwise re-arms itself for the current wait's deadline.
    A stream whose tokens keep coming therefore costs a timer per ``timeout`` seconds, not one
    per token. While the consumer holds an event nothing is waited on, so the timer lapses and
    the next wait arms it again. Cancellation is told apart from a caller's the way
    ``asyncio.timeout`` does it (``Task.cancelling``/``uncancel``).
    """

    __slots__ = ("_cancelling", "_handle", "_loop", "_since", "_task", "_waiting", "fired", "timeout")

    # A timer may run up to the loop's clock resolution early; a stall ended a millisecond early
    # is still a stall, and this avoids re-arming for a deadline a hair away.
    _EARLY = 0.001

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.fired = False
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._since = 0.0
        self._waiting = False
        self._cancelling = 0

    async def next(self, upstream: AsyncGenerator[Event, None]) -> Event:
        """The upstream's next event; ``_Stalled`` when it took ``timeout`` seconds."""
        if self.timeout <= 0:
            return await upstream.__anext__()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._since = self._loop.time()
        self._waiting = True
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + self.timeout, self._check)
        try:
            event = await upstream.__anext__()
        except asyncio.CancelledError:
            if self.fired and task.uncancel() <= self._cancelling:
                self.fired = False
                raise _Stalled from None
            raise
        finally:
            self._waiting = False
        if self.fired:
            # The event and the timer landed in the same loop turn: the cancellation was
            # requested but not delivered. Take it here, where it is ours, not in the consumer.
            self.fired = False
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if task.uncancel() > self._cancelling:
                    raise  # the caller cancelled too
        return event

    def _check(self) -> None:
        self._handle = None
        if not self._waiting or self._task is None:
            return  # the consumer has the stream: its time is not the upstream's silence
        deadline = self._since + self.timeout
        if self._loop.time() >= deadline - self._EARLY:
            self.fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._task = None


def _stall_events(timeout: float) -> tuple[Event, Event]:
    shown = f"{timeout:g}"
    return (
        StreamError(
            ErrorClass.PROVIDER, f"the model stopped responding for {shown} s; try again", retryable=True, code=STALLED
        ),
        Done(StopReason.ERROR),
    )


def _backoff(attempt: int, retry_after: float | None, base: float, cap: float) -> float:
    """Full-jitter exponential backoff, or the provider's Retry-After when it gave one (capped)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), cap)
    exponential = min(cap, base * (2 ** (attempt - 1)))
    return random.uniform(exponential / 2, exponential)


# ---- collecting a stream for the non-streaming Complete RPC ----------------------------------


@dataclass
class CompletionResult:
    """Everything a stream produced, gathered."""

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    stop_reason: StopReason = StopReason.END_TURN
    error: StreamError | None = None


class ResultBuilder:
    """Gathers a stream's events into one ``CompletionResult`` (the non-streaming calls)."""

    def __init__(self) -> None:
        self.result = CompletionResult()
        self._text: list[str] = []
        self._reasoning: list[str] = []

    def add(self, event: Event) -> None:
        """Folds one event into the result."""
        result = self.result
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            # Redacted reasoning carries encrypted data for the provider, not text for anyone.
            if not event.redacted:
                self._reasoning.append(event.text)
            if event.signature:
                result.reasoning_signature = event.signature
        elif isinstance(event, ToolCallEvent):
            result.tool_calls.append(event.call)
        elif isinstance(event, Annotation):
            result.annotations.append(event)
        elif isinstance(event, Usage):
            result.usage = event
        elif isinstance(event, StreamError):
            result.error = event
        elif isinstance(event, Done):
            result.stop_reason = event.stop_reason

    def finish(self) -> CompletionResult:
        """The result, its text and reasoning joined."""
        self.result.text = "".join(self._text)
        self.result.reasoning = "".join(self._reasoning)
        return self.result


async def complete(
    provider: Provider,
    request: CompletionRequest,
    *,
    max_attempts: int = 3,
    base_backoff: float = 0.5,
    max_backoff: float = 8.0,
    stall_timeout: float | None = None,
) -> CompletionResult:
    """Run ``stream_completion`` to the end and gather its events.

    A failure after output started is returned in ``error`` with the partial output, matching what
    a streaming consumer would have seen; a failure before it raises ``ProviderError``.
    """
    builder = ResultBuilder()
    stream = stream_completion(
        provider,
        request,
        max_attempts=max_attempts,
        base_backoff=base_backoff,
        max_backoff=max_backoff,
        stall_timeout=stall_timeout,
    )
    async for event in stream:
        builder.add(event)
    return builder.finish()
