"""Logging, tracing and instrumentation set-up: the only module that configures handlers.

Logs are JSON lines with the service name and the current trace/span ids. Traces go nowhere
(``off``), into the log (``logs``), to an OTLP collector (``otlp``), or to a JSON-lines file
(``file``, used by tests to follow one request across processes). The plugin configuration's
``telemetryOutput`` and ``openTelemetryEndpoint`` switch the output live (``apply_output``); the
``telemetry_output`` setting is the output until the configuration names one (``file`` stays).
Every process is ``mattermost-ai-agents`` with its own ``agents.service``, as the plugin names
its traces. Instrumentation of gRPC channels and of aiohttp must run before any channel, session
or HTTP server is created, since it patches their constructors (gRPC servers make their own spans:
``grpc_server_span``); so it is always installed, and while the output is off the sampler drops
every span: none is recorded or exported.
Secrets in query strings (``?access_token=``, ``?key=``, OAuth's ``code``) are redacted here, from
every log line and every exported span, whatever code or library wrote them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import aiohttp
import grpc
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from services.common.settings import CommonSettings

logger = logging.getLogger(__name__)

REDACTED = "REDACTED"
# The plugin's service name in every trace; which process made a span is its resource's attribute.
SERVICE_NAME = "mattermost-ai-agents"
SERVICE_ATTRIBUTE = "agents.service"
PLUGIN_ID = "mattermost-ai"
# Query parameters that carry credentials: Mattermost's ``access_token``, OAuth's ``code``,
# ``state`` and ``client_secret``, API keys (Google's ``key``), signed URLs (``sig``,
# ``X-Amz-Signature``, ``X-Goog-Credential``, ``AWSAccessKeyId``). Matched case-insensitively.
_SECRET_PARAMS = frozenset({"code", "state", "sig", "key", "auth", "session", "jwt"})
_SECRET_PARTS = ("token", "secret", "password", "passwd", "apikey", "api_key", "accesskey", "signature", "credential")
# ``name=value`` after ``?``, ``&``, ``;`` or ``#`` (an OAuth fragment), or opening a bare query
# string (``url.query``). The value stops before ``?`` so that a URL nested in a harmless
# parameter is scanned too, and before quotes and brackets that close a URL quoted in a message.
_QUERY_PARAM = re.compile(r"(?P<lead>^|[?&;#])(?P<name>[^=&#?;\s'\"<>]+)=(?P<value>[^&#?;\s'\"<>]*)")


def is_secret_name(name: str) -> bool:
    """Whether a query parameter or header called ``name`` carries a credential."""
    name = unquote(name).lower()
    return name in _SECRET_PARAMS or name.endswith(("_key", "-key")) or any(p in name for p in _SECRET_PARTS)


def redact_query_secrets(text: str) -> str:
    """``text`` (a URL, a path with its query, a bare query string, a log message or traceback
    quoting one) with the value of every secret query parameter replaced by ``REDACTED``."""
    if "=" not in text:
        return text
    return _QUERY_PARAM.sub(_redact_param, text)


def _redact_param(match: re.Match[str]) -> str:
    if not match["value"] or not is_secret_name(match["name"]):
        return match[0]
    return f"{match['lead']}{match['name']}={REDACTED}"


_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, the plugin (``plugin_ai``, as the plugin's own log
    lines are tagged, so one filter finds both), service, logger, message, trace ids, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line, query-string secrets redacted from its text."""
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "plugin_ai": PLUGIN_ID,
            "service": self.service,
            "pid": record.process,  # which of a service's workers (services/common/workers.py)
            "logger": record.name,
            "msg": redact_query_secrets(record.getMessage()),
        }
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            entry["trace_id"] = format(ctx.trace_id, "032x")
            entry["span_id"] = format(ctx.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                if not isinstance(value, (int, float, bool, type(None))):
                    value = redact_query_secrets(str(value))
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact_query_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr as a JSON line naming ``service``, from ``level`` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request lines or secrets-adjacent details at INFO stay at WARNING.
    # The MCP SDK's client logs each request's URL and the server's session id.
    for noisy in (
        "aiohttp.access",
        "httpx",
        "httpx2",
        "mcp.client",
        "botocore",
        "urllib3",
        "alembic.runtime.migration",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# The loggers the plugin configuration's debug switch turns up: the project's own. Libraries stay
# at the root's level, since some log request details (headers, connection strings) at DEBUG.
PROJECT_LOGGER = "services"


class LiveLogLevel:
    """The plugin configuration's ``enableDebugLogging``, applied to this process while it runs:
    the project's loggers log at DEBUG while it is on, and at the service's own level after."""

    def __init__(self) -> None:
        self._debug = False

    def apply(self, debug: bool) -> None:
        """Turn debug logging on or off; says so in the log when it changes."""
        if debug == self._debug:
            return
        self._debug = debug
        # NOTSET: back to the root's level, the service's AGENTS_LOG_LEVEL.
        logging.getLogger(PROJECT_LOGGER).setLevel(logging.DEBUG if debug else logging.NOTSET)
        logger.info("debug logging %s (plugin configuration)", "on" if debug else "off")


class JsonLinesSpanExporter(SpanExporter):
    """Appends finished spans as JSON lines (trace id, span id, parent id, name, attributes)."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Append one line per span to the file."""
        lines = []
        for span in spans:
            ctx = _context_of(span)
            lines.append(
                json.dumps(
                    {
                        "service": span.resource.attributes.get(SERVICE_ATTRIBUTE, ""),
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(span.parent.span_id, "016x") if span.parent else "",
                        "attributes": {
                            k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
                            for k, v in (span.attributes or {}).items()
                        },
                        "status": span.status.status_code.name,
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                    }
                )
            )
        with self._lock, self._path.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


class LogSpanExporter(SpanExporter):
    """``telemetryOutput: logs``: each finished span becomes one log line."""

    _logger = logging.getLogger("agents.spans")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Log one line per span (its name, trace id and duration)."""
        for span in spans:
            ctx = _context_of(span)
            self._logger.info(
                "span %s",
                span.name,
                extra={
                    "span_trace_id": format(ctx.trace_id, "032x"),
                    "span_duration_ms": ((span.end_time or 0) - (span.start_time or 0)) / 1e6,
                },
            )
        return SpanExportResult.SUCCESS


def _context_of(span: ReadableSpan) -> SpanContext:
    """The span's ids; all zero (invalid) for a span built without (the SDK's always have them)."""
    return span.get_span_context() or trace.INVALID_SPAN_CONTEXT


class RedactingSpanExporter(SpanExporter):
    """Hands spans to ``inner`` with query-string secrets redacted from their name, status and
    every string attribute, of the span and of its events, whichever instrumentation set them:
    the aiohttp server's ``http.target``/``http.url``/``url.query``, the aiohttp client's
    ``http.url``/``url.full`` (a provider's or Google's ``?key=``), an exception that quotes a URL."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Hand the spans, redacted, to the inner exporter."""
        return self._inner.export([_redacted_span(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter; False when it did not within ``timeout_millis``."""
        return self._inner.force_flush(timeout_millis)


def _redacted_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` itself when it holds no secret (most spans), else a redacted copy."""
    name = redact_query_secrets(span.name)
    attributes = _redacted_attributes(span.attributes)
    events = [Event(e.name, _redacted_attributes(e.attributes), e.timestamp) for e in span.events]
    description = span.status.description and redact_query_secrets(span.status.description)
    unchanged = (
        name == span.name
        and attributes is span.attributes
        and all(new.attributes is old.attributes for new, old in zip(events, span.events, strict=True))
        and description == span.status.description
    )
    if unchanged:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, description),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redacted_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``attributes`` itself when no value changes, else a redacted copy."""
    if not attributes:
        return attributes
    redacted = {key: _redacted_value(value) for key, value in attributes.items()}
    return attributes if redacted == dict(attributes) else redacted


def _redacted_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_query_secrets(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact_query_secrets(v) if isinstance(v, str) else v for v in value)
    return value


class _LiveSampler(Sampler):
    """Records every span while an output is on, none while it is off."""

    def __init__(self, tracing: LiveTracing) -> None:
        self._tracing = tracing

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        """RECORD_AND_SAMPLE while exporting, else DROP."""
        on = self._tracing.exporting
        return SamplingResult(Decision.RECORD_AND_SAMPLE if on else Decision.DROP, attributes if on else None)

    def get_description(self) -> str:
        """The sampler's name."""
        return "LiveSampler"


class _CurrentProcessor(SpanProcessor):
    """Hands each span to the output's processor of the moment."""

    def __init__(self, tracing: LiveTracing) -> None:
        self._tracing = tracing

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Pass the started span on."""
        if (processor := self._tracing.processor) is not None:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Pass the ended span on."""
        if (processor := self._tracing.processor) is not None:
            processor.on_end(span)

    def shutdown(self) -> None:
        """Flush and stop the current output."""
        if (processor := self._tracing.processor) is not None:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the current output."""
        processor = self._tracing.processor
        return processor is None or processor.force_flush(timeout_millis)


class LiveTracing:
    """The process's tracer provider and its output, which ``apply`` switches while it runs."""

    def __init__(self, settings: CommonSettings) -> None:
        self._settings = settings
        self.output = ""
        self.endpoint = ""
        self.processor: SpanProcessor | None = None
        resource = Resource.create({"service.name": SERVICE_NAME, SERVICE_ATTRIBUTE: settings.service_name})
        self.provider = TracerProvider(resource=resource, sampler=_LiveSampler(self))
        self.provider.add_span_processor(_CurrentProcessor(self))
        self._switch(settings.telemetry_output, settings.otlp_endpoint)

    @property
    def exporting(self) -> bool:
        """Whether spans go anywhere now."""
        return self.processor is not None

    def apply(self, output: str, endpoint: str) -> None:
        """Switch to the plugin configuration's ``output`` (empty: the setting's) and ``endpoint``
        (empty: the setting's). A process started with ``file`` (tests) keeps it."""
        if self._settings.telemetry_output == "file":
            return
        output = output or self._settings.telemetry_output
        endpoint = endpoint or self._settings.otlp_endpoint
        if output != self.output or (output == "otlp" and endpoint != self.endpoint):
            self._switch(output, endpoint)

    def _switch(self, output: str, endpoint: str) -> None:
        old, self.processor = self.processor, self._processor_for(output, endpoint)
        self.output, self.endpoint = output, endpoint
        if old is not None:
            # Flushing what the old output still holds may wait on a collector: not on the loop.
            threading.Thread(target=old.shutdown, name="tracing-switch", daemon=True).start()
        # Not the endpoint: an internal address.
        logger.info("tracing output: %s", output)

    def _processor_for(self, output: str, endpoint: str) -> SpanProcessor | None:
        if output == "file" and self._settings.trace_file:
            return SimpleSpanProcessor(RedactingSpanExporter(JsonLinesSpanExporter(self._settings.trace_file)))
        if output == "logs":
            return BatchSpanProcessor(RedactingSpanExporter(LogSpanExporter()))
        if output == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            return BatchSpanProcessor(RedactingSpanExporter(OTLPSpanExporter(endpoint=endpoint, insecure=True)))
        return None


_live: LiveTracing | None = None


def configure_tracing(settings: CommonSettings) -> LiveTracing:
    """Install the tracer provider and instrument gRPC clients and aiohttp (before any client or
    server exists), with the ``telemetry_output`` setting's output until ``apply_output``."""
    global _live
    _live = LiveTracing(settings)
    trace.set_tracer_provider(_live.provider)
    _instrument()
    return _live


def apply_output(output: str, endpoint: str) -> None:
    """Switch this process's tracing to the plugin configuration's ``telemetryOutput`` and
    ``openTelemetryEndpoint`` (no-op where tracing was never configured: unit tests)."""
    if _live is not None:
        _live.apply(output, endpoint)


_instrumented = False


def _instrument() -> None:
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

    # gRPC servers make their own spans (grpc_server_span): the instrumentation's server
    # interceptor wraps a response stream in a generator that grpc.aio abandons when a call ends
    # mid-send, leaving its context to be detached later in another task (logged as errors).
    # Filtered to the calls made while an output is on: with tracing off, each call paid for a
    # span the sampler dropped, and each message of a stream for the generator that ends it.
    GrpcAioInstrumentorClient(filter_=exporting).instrument()  # type: ignore[no-untyped-call]  # BaseInstrumentor.__new__ is unannotated
    # instrument() sets up the tracer, meters and conventions its middleware reads; its patched
    # web.Application is undone: it put the middleware in every application, sub-applications too
    # (two server spans per request), and ran it with tracing off (http_server_middleware).
    server = AioHttpServerInstrumentor()
    server.instrument()
    server.uninstrument()
    # Outbound aiohttp sessions carry http_client_trace_configs() (services/common/http.py).
    _instrumented = True


def exporting(*_: object) -> bool:
    """Whether a tracing output is on now (it switches live); takes and ignores a filter's arguments."""
    return _live is not None and _live.exporting


def http_client_trace_configs() -> list[aiohttp.TraceConfig]:
    """What every outbound aiohttp session carries: OpenTelemetry's client spans (and the
    ``traceparent`` header), started only while an output is on. With tracing off, each request
    still built the span's attributes, a span the sampler dropped and the header: about 5 % of the
    mcp process's CPU per tool call. None where tracing was never configured (unit tests, tools)."""
    if _live is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    config = create_trace_config()
    # The end and exception hooks do nothing for a request whose start made no span.
    starts = list(config.on_request_start)

    async def on_request_start(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if exporting():
            for start in starts:
                await start(session, context, params)

    config.on_request_start.clear()
    config.on_request_start.append(on_request_start)
    return [config]


def http_server_middleware() -> Middleware:
    """The aiohttp middleware that makes each request's server span, for the outermost
    application only; while no output is on, it only passes the request on: attributes collected
    and a context extracted per request for a span the sampler drops were a cost of every request."""
    from opentelemetry.instrumentation.aiohttp_server import create_aiohttp_middleware

    traced = create_aiohttp_middleware()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not exporting():
            return await handler(request)
        response: web.StreamResponse = await traced(request, handler)
        return response

    return middleware


def tracer(name: str) -> trace.Tracer:
    """The tracer a module makes its spans with (a no-op one while tracing is off)."""
    return trace.get_tracer(name)


_GRPC_STATUS = "rpc.grpc.status_code"
# The codes that mean the server failed (OpenTelemetry's RPC conventions); the others are answers.
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def grpc_server_span(method: str, metadata: Mapping[str, str]) -> AbstractContextManager[object]:
    """The current span of one incoming gRPC call, continuing the caller's trace (W3C trace
    context in its metadata); nothing while tracing is off."""
    if _live is None or not _live.exporting:
        return contextlib.nullcontext()
    service, _, name = method.lstrip("/").partition("/")
    return tracer(__name__).start_as_current_span(
        method,
        context=propagate.extract(metadata),
        kind=trace.SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name, _GRPC_STATUS: 0},
        record_exception=False,
        set_status_on_exception=False,
    )


def record_grpc_status(code: grpc.StatusCode) -> None:
    """Record how the current incoming gRPC call ends on its span."""
    span = trace.get_current_span()
    span.set_attribute(_GRPC_STATUS, code.value[0])
    if code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, code.name))
