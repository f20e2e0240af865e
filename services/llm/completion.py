"""Completions as the LLM API serves them: resolve the service, trim, stream, observe.

``CompletionService.stream`` is what StreamComplete runs: it pulls one event from the streaming
engine each time its consumer pulls one (no buffering), maps failures before the first event to
domain errors (``outcomes.py``), and passes failures after it on as ``StreamError`` + ``Done``.
Every call, however it ends, is observed once: the ``llm chat completion`` span, the request
counter, the overhead histogram, token counters and, when enabled, the token usage log and the
LLM Trace's completion record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field, replace

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from services.common import attributes
from services.common.errors import DomainError, ErrorClass
from services.common.telemetry import tracer
from services.llm import outcomes
from services.llm.catalog import ProviderCatalog
from services.llm.metrics import LlmMetrics
from services.llm.overhead import OverheadClock, reset_clock, start_clock
from services.llm.provider_trace import ProviderTrace
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Provider,
    ProviderError,
    ServiceSettings,
    StreamError,
    Usage,
)
from services.llm.providers.encoding import resolve_model
from services.llm.streaming import CompletionResult, ResultBuilder, stream_completion
from services.llm.tokens import TokenCounter, counter_for_model_async, trim_messages_async
from services.llm.usage_log import TokenUsageLog, TokenUsageRecord

logger = logging.getLogger(__name__)

SPAN_NAME = "llm chat completion"


@dataclass(frozen=True)
class Attribution:
    """Who a completion is for and why (usage logs, metrics, spans)."""

    user_id: str = ""
    team_id: str = ""
    agent_username: str = ""
    operation: str = "conversation"


@dataclass
class EngineOptions:
    """Streaming engine knobs (tests shorten the backoff)."""

    max_attempts: int = 3
    base_backoff: float = 0.5
    max_backoff: float = 8.0


@dataclass
class _Call:
    """What one completion learned on its way, for the observation at its end."""

    attribution: Attribution
    streaming: bool
    clock: OverheadClock
    span: trace.Span
    service_id: str = ""
    provider_type: str = ""
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    error: BaseException | None = None
    error_class: ErrorClass | None = None
    # The events gathered for the LLM Trace, while it is on.
    traced: ResultBuilder | None = None


class CompletionService:
    """Completions against configured services, observed."""

    def __init__(
        self,
        catalog: ProviderCatalog,
        metrics: LlmMetrics,
        *,
        usage_log: TokenUsageLog | None = None,
        usage_logging_enabled: Callable[[], bool] = lambda: False,
        o200k_file: str = "",
        engine: EngineOptions | None = None,
        trace: ProviderTrace | None = None,
    ) -> None:
        self.catalog = catalog
        self.metrics = metrics
        self.usage_log = usage_log
        self.usage_logging_enabled = usage_logging_enabled
        self.o200k_file = o200k_file
        self.engine = engine or EngineOptions()
        self.trace = trace
        self._tracer = tracer(__name__)
        self._counters: dict[str, TokenCounter] = {}

    # ---- streaming ---------------------------------------------------------------------------

    async def stream(
        self, service_id: str, request: CompletionRequest, attribution: Attribution, *, streaming: bool = True
    ) -> AsyncGenerator[Event, None]:
        """Events of one completion, ending with ``Done``. Raises a domain error before the first event."""
        clock, clock_token = start_clock()
        call = _Call(
            attribution=attribution,
            streaming=streaming,
            clock=clock,
            span=self._tracer.start_span(SPAN_NAME, kind=trace.SpanKind.CLIENT),
            traced=ResultBuilder() if self.trace is not None and self.trace.enabled else None,
        )
        engine: AsyncGenerator[Event, None] | None = None
        try:
            engine, event = await self._start(service_id, request, call)
            while True:
                if isinstance(event, Usage):
                    call.usage = event
                elif isinstance(event, StreamError):
                    call.error_class = event.error_class
                if call.traced is not None:
                    call.traced.add(event)
                yield event
                if isinstance(event, Done):
                    return
                event = await anext(engine)
        except GeneratorExit:
            # The consumer hung up (client cancelled or disconnected): the caller ended it.
            call.error_class = ErrorClass.CALLER
            raise
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            if engine is not None:
                await engine.aclose()
            clock.stop()
            reset_clock(clock_token)
            self._observe(call)

    async def _start(
        self, service_id: str, request: CompletionRequest, call: _Call
    ) -> tuple[AsyncGenerator[Event, None], Event]:
        """The engine of the first service in the fallback chain that starts answering, and its
        first event. A provider-side failure before that event moves on to the service's
        ``fallbackServiceID`` (as the plugin does); anything else, or the chain's end, is raised."""
        visited: set[str] = set()
        while True:
            visited.add(service_id)
            provider = await self.catalog.get(service_id)
            # The service that answers is the one the call's telemetry and usage are attributed to.
            call.service_id = service_id
            call.provider_type = str(provider.settings.type)
            call.model = resolve_model(request, provider.settings)
            fitted = await self._fit(request, provider.settings, call.model)
            engine = stream_completion(
                provider,
                fitted,
                max_attempts=self.engine.max_attempts,
                base_backoff=self.engine.base_backoff,
                max_backoff=self.engine.max_backoff,
            )
            try:
                return engine, await _first_event(engine)
            except BaseException as exc:
                await engine.aclose()
                fallback = provider.settings.fallback_service_id
                if not _falls_back(exc) or not fallback or fallback in visited:
                    raise
                logger.warning("service %s failed before answering (%s); falling back to %s", service_id, exc, fallback)
                service_id = fallback
                # The request's model is one of the named service's; a fallback answers with its own default.
                request = replace(request, model="")

    async def complete(self, service_id: str, request: CompletionRequest, attribution: Attribution) -> CompletionResult:
        """The whole completion, gathered. A failure after output started fails the call too:
        a unary caller cannot show partial text, so it gets the error instead."""
        builder = ResultBuilder()
        async for event in self.stream(service_id, request, attribution, streaming=False):
            builder.add(event)
        result = builder.finish()
        if result.error is not None:
            raise outcomes.domain_error_for_stream_error(result.error)
        return result

    async def model_for(self, service_id: str, request: CompletionRequest) -> tuple[Provider, str]:
        """The provider and the model a request would use."""
        provider = await self.catalog.get(service_id)
        return provider, resolve_model(request, provider.settings)

    async def counter(self, model: str) -> TokenCounter:
        """The token counter for ``model``, loaded off the event loop once per model."""
        counter = self._counters.get(model)
        if counter is None:
            counter = await counter_for_model_async(model, o200k_file=self.o200k_file)
            self._counters[model] = counter
        return counter

    async def _fit(self, request: CompletionRequest, settings: ServiceSettings, model: str) -> CompletionRequest:
        """Trim the prompt to the service's input limit (never the system prompt or newest user
        message; ``ContextTooLong`` when even those do not fit)."""
        if settings.input_token_limit <= 0:
            return request
        counter = await self.counter(model)
        messages = await trim_messages_async(request.messages, settings.input_token_limit, counter)
        if len(messages) == len(request.messages):
            return request
        return replace(request, messages=messages)

    # ---- observation -------------------------------------------------------------------------

    def _observe(self, call: _Call) -> None:
        """Span, metrics and usage log for one finished call. Never raises."""
        try:
            error_class = call.error_class
            if call.error is not None:
                error_class = _error_class(call.error)
            outcome = outcomes.SUCCESS if error_class is None else str(error_class)
            a = call.attribution
            span = call.span
            span.set_attributes(
                {
                    attributes.LLM_PROVIDER: call.provider_type,
                    attributes.LLM_MODEL: call.model,
                    attributes.LLM_OPERATION: a.operation,
                    attributes.LLM_STREAMING: call.streaming,
                    attributes.LLM_INPUT_TOKENS: call.usage.input_tokens,
                    attributes.LLM_OUTPUT_TOKENS: call.usage.output_tokens,
                    attributes.LLM_OVERHEAD_SECONDS: call.clock.overhead,
                }
            )
            if a.user_id:
                span.set_attribute(attributes.USER_ID, a.user_id)
            if a.agent_username:
                span.set_attribute(attributes.AGENT_NAME, a.agent_username)
            if error_class is not None:
                span.set_attribute(attributes.LLM_ERROR_CLASS, str(error_class))
                message = call.error.message if isinstance(call.error, DomainError) else str(error_class)
                span.set_status(Status(StatusCode.ERROR, message))
            span.end()
            self.metrics.observe(
                provider=call.provider_type or "unknown",
                model=call.model or "unknown",
                operation=a.operation,
                outcome=outcome,
                overhead_seconds=call.clock.overhead,
                bot_name=a.agent_username,
                input_tokens=call.usage.input_tokens,
                output_tokens=call.usage.output_tokens,
            )
            if self.usage_log is not None and call.provider_type and self.usage_logging_enabled():
                self.usage_log.record(
                    TokenUsageRecord.from_usage(
                        call.usage,
                        user_id=a.user_id,
                        team_id=a.team_id,
                        bot_username=a.agent_username,
                        model=call.model,
                        provider=call.provider_type,
                        operation=a.operation,
                        operation_subtype="streaming" if call.streaming else "nostream",
                    )
                )
            if call.traced is not None and self.trace is not None and call.provider_type:
                failure = call.error.message if isinstance(call.error, DomainError) else ""
                self.trace.completion(
                    call.service_id, call.provider_type, call.model, call.traced.finish(), failure=failure
                )
        except Exception:
            logger.exception("could not record a completion's telemetry")


async def _first_event(engine: AsyncGenerator[Event, None]) -> Event:
    """The engine's first event; a failure before it as a domain error."""
    try:
        event = await anext(engine)
    except ProviderError as exc:
        raise outcomes.domain_error_for(exc) from None
    if isinstance(event, StreamError):
        raise outcomes.domain_error_for_stream_error(event)
    return event


def _falls_back(error: BaseException) -> bool:
    """The service itself failed (down, overloaded, rate limited, stalled, key or quota trouble),
    not the request: another service may answer it."""
    return isinstance(error, DomainError) and error.error_class is ErrorClass.PROVIDER


def _error_class(error: BaseException) -> ErrorClass:
    if isinstance(error, DomainError):
        return error.error_class
    if isinstance(error, asyncio.CancelledError):
        return ErrorClass.CALLER  # the caller cancelled or its deadline passed
    return ErrorClass.INTERNAL
