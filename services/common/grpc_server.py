"""gRPC server bootstrap shared by every service.

``GrpcServiceHost`` builds a ``grpc.aio`` server with the standard health and reflection
services, the call interceptor (identity, deadline, error mapping), and graceful shutdown:
health goes NOT_SERVING, clients get ``readiness_drain_seconds`` to move away, then in-flight
calls and streams get ``shutdown_grace_seconds`` to finish before they are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Never, TypeAlias, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import errors, identity, telemetry
from services.common.errors_map import INTERNAL_MESSAGE, domain_error_of, status_for, trailing_metadata_for
from services.common.metrics import MetricsEndpoint, ServiceMetrics
from services.common.settings import CommonSettings, WorkersSettings

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
HEALTH_FULL_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


@dataclass(frozen=True)
class ServicerBinding:
    """One servicer and the generated function that registers it, with its full service name."""

    full_name: str
    servicer: object
    register: Callable[[Any, grpc.aio.Server], None]


# The servicer methods grpc.aio keeps in an RpcMethodHandler (the stubs type them after the sync
# API's plain functions of a grpc.ServicerContext), as the interceptor's wrappers see them: the
# request is decoded here, so its message type is not known. A unary response is a coroutine's
# result; a streamed one an async generator's items, or written by a coroutine with context.write().
_UnaryMethod: TypeAlias = Callable[[object, grpc.aio.ServicerContext[object, _Response]], Awaitable[_Response]]
_StreamMethod: TypeAlias = Callable[
    [object, grpc.aio.ServicerContext[object, _Response]], AsyncGenerator[_Response, None] | Awaitable[None]
]


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Per call: checks the service credential and that the process is ready, decodes the
    request, sets identity and deadline context variables, makes the call's span (when tracing),
    counts the call in the metrics, and maps errors to status codes: domain errors by the table,
    an unreachable database to UNAVAILABLE, anything else to INTERNAL with a logged traceback."""

    def __init__(self, service_token: str, metrics: ServiceMetrics) -> None:
        self._token = service_token.encode()
        self._metrics = metrics
        # False until the process first reports SERVING: the port is open while it prepares
        # (migrations, loading its state), and clients balancing over replicas connect at once.
        self.ready = False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Request, _Response] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        """The method's handler wrapped to serve the call as the class says; None for an unknown method."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        metadata = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        refusal: errors.DomainError | None = None
        if method.startswith(_UNGUARDED_PREFIXES):
            internal = False
        else:
            presented = metadata.get(identity.SERVICE_TOKEN_KEY, "").encode()
            authorised = not self._token or hmac.compare_digest(presented, self._token)
            internal = bool(self._token) and authorised
            refusal = None if authorised else _UNAUTHORISED
            if refusal is None and not self.ready:
                # UNAVAILABLE: clients retry another replica, or this one once it is ready,
                # instead of getting answers from state not loaded yet.
                refusal = _NOT_READY
        caller = identity.Identity.from_metadata(metadata, internal=internal)
        call = _Call(caller, refusal, metadata, method, _decoder(handler, method), self._metrics)
        return _wrap_handler(handler, call)


# Health and reflection stay reachable without the service credential (probes, grpcurl).
_UNGUARDED_PREFIXES = (f"/{HEALTH_FULL_NAME}/", "/grpc.reflection.")


@dataclass(frozen=True)
class _Call:
    """What the interceptor learnt of one call, for the wrapper that serves it."""

    caller: identity.Identity
    refusal: errors.DomainError | None  # why the call is refused before it is served, if it is
    metadata: dict[str, str]
    method: str
    decode: Callable[[bytes], object]
    metrics: ServiceMetrics

    def decoded(self, raw: bytes | AsyncIterator[bytes]) -> object:
        """The decoded request (a unary one arrives as bytes), or an iterator decoding the stream of them."""
        return self.decode(raw) if isinstance(raw, bytes) else (self.decode(r) async for r in raw)


@contextlib.contextmanager
def _in_call(context: grpc.aio.ServicerContext[_Request, _Response], call: _Call) -> Iterator[None]:
    """The caller's identity, the call's deadline and (when tracing) its span, for its duration;
    then its status and duration in the metrics."""
    started = time.monotonic()
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    identity_token = identity.current_identity.set(call.caller)
    deadline_token = identity.current_deadline.set(deadline)
    # Probes and reflection make no spans (nor debug lines): a health check every few seconds is
    # noise in a trace store.
    probe = call.method.startswith(_UNGUARDED_PREFIXES)
    span = contextlib.nullcontext() if probe else telemetry.grpc_server_span(call.method, call.metadata)
    cancelled = False
    try:
        with span:
            if not probe:
                logger.debug("call %s", call.method, extra={"caller_user_id": call.caller.user_id})
            yield
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        identity.current_identity.reset(identity_token)
        identity.current_deadline.reset(deadline_token)
        # The code an abort set; None (the stubs say otherwise) when none did: the call succeeded.
        aborted = cast("grpc.StatusCode | None", context.code())
        code = grpc.StatusCode.CANCELLED if cancelled else aborted or grpc.StatusCode.OK
        call.metrics.observe_grpc(call.method, code.name, time.monotonic() - started)


async def _abort(context: grpc.aio.ServicerContext[_Request, _Response], exc: BaseException, method: str) -> Never:
    domain = domain_error_of(exc)
    if domain is not None:
        if domain is not exc:
            # Only the class: the driver's message carries the server's address.
            logger.warning("%s failed: %s (%s)", method, domain.message, type(exc).__name__)
        code = status_for(domain)
        telemetry.record_grpc_status(code)
        context.set_trailing_metadata(trailing_metadata_for(domain))
        await context.abort(code, domain.message)
    if isinstance(exc, NotImplementedError):
        # The generated base class answers for RPCs whose feature has not landed yet.
        await _abort(context, errors.Unimplemented(f"{method} is not implemented yet"), method)
    logger.error("unhandled error in %s", method, exc_info=exc)
    telemetry.record_grpc_status(grpc.StatusCode.INTERNAL)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


_UNAUTHORISED = errors.Unauthenticated("missing or invalid service credential")
_NOT_READY = errors.UpstreamUnavailable("the service is starting and not ready for calls yet", retry_after=1)


def _decoder(handler: grpc.RpcMethodHandler[_Request, _Response], method: str) -> Callable[[bytes], object]:
    """The handler's request deserializer, failing with InvalidInput: left to grpc, bytes that are
    not the request message would answer UNKNOWN."""
    deserialize: Callable[[bytes], object] = handler.request_deserializer or (lambda raw: raw)

    def decode(raw: bytes) -> object:
        try:
            return deserialize(raw)
        except Exception:
            raise errors.InvalidInput(f"the request is not a valid message for {method}") from None

    return decode


def _wrap_handler(
    handler: grpc.RpcMethodHandler[_Request, _Response], call: _Call
) -> grpc.RpcMethodHandler[_Request, _Response]:
    # Requests reach the wrapper as bytes and are decoded inside it, after the credential check.
    # The ignores: the stubs type the handler's methods after the sync API's (see _UnaryMethod).
    if handler.unary_unary or handler.stream_unary:
        factory = grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
        inner: _UnaryMethod[_Response] = handler.unary_unary or handler.stream_unary  # type: ignore[assignment]
        return factory(_unary_behaviour(inner, call), None, handler.response_serializer)
    factory = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
    inner_stream: _StreamMethod[_Response] = handler.unary_stream or handler.stream_stream  # type: ignore[assignment]
    return factory(_streaming_behaviour(inner_stream, call), None, handler.response_serializer)


def _unary_behaviour(
    inner: _UnaryMethod[_Response], call: _Call
) -> Callable[[bytes | AsyncIterator[bytes], grpc.aio.ServicerContext[object, _Response]], Awaitable[_Response]]:
    """``inner`` serving ``call``: its one response, or the status its error maps to."""

    async def unary(
        request: bytes | AsyncIterator[bytes], context: grpc.aio.ServicerContext[object, _Response]
    ) -> _Response:
        with _in_call(context, call):
            try:
                if call.refusal is not None:
                    raise call.refusal
                return await inner(call.decoded(request), context)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                await _abort(context, exc, call.method)

    return unary


def _streaming_behaviour(
    inner: _StreamMethod[_Response], call: _Call
) -> Callable[[bytes | AsyncIterator[bytes], grpc.aio.ServicerContext[object, _Response]], Awaitable[None]]:
    """``inner`` serving ``call``: its responses written as they come, then the status its error maps to."""

    # A coroutine that writes each response, not a generator that yields them: grpc.aio leaves
    # a generator it iterates suspended when the call ends mid-send, for the garbage collector to
    # close later in another task, where the call's context variables (identity, deadline, trace
    # context) cannot be reset; error tracebacks for a client that merely went away. Here the
    # handler's generators close in the call, whatever ends it.
    async def streaming(
        request: bytes | AsyncIterator[bytes], context: grpc.aio.ServicerContext[object, _Response]
    ) -> None:
        with _in_call(context, call):
            try:
                if call.refusal is not None:
                    raise call.refusal
                responses = inner(call.decoded(request), context)
                if not isinstance(responses, AsyncGenerator):
                    await responses  # handlers that write with context.write()
                    return
                async with contextlib.aclosing(responses):
                    async for response in responses:
                        try:
                            await context.write(response)
                        except grpc.aio.InternalError:
                            # The call ended (cancelled, past its deadline, connection lost)
                            # before grpc.aio noticed: end it as the cancellation it is.
                            raise asyncio.CancelledError from None
            except asyncio.CancelledError:
                telemetry.record_grpc_status(grpc.StatusCode.CANCELLED)
                logger.info("stream cancelled", extra={"method": call.method})
                raise
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort(context, exc, call.method)

    return streaming


def bind(server: grpc.aio.Server, host: str, port: int) -> int:
    """Listen on ``host:port`` (0: a free port); returns the port. A port that cannot be bound is
    an ``OSError`` naming it (grpc raises a bare RuntimeError, or returns 0 in older releases)."""
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise OSError(f"cannot bind {host}:{port}: the address is in use or not available")
    return bound


class GrpcServiceHost:
    """A running gRPC server for one service. Starts NOT_SERVING; call ``set_serving`` once the
    service's dependencies (database, migrations, peers it cannot work without) are ready."""

    def __init__(
        self,
        settings: CommonSettings,
        bindings: Iterable[ServicerBinding],
        *,
        max_concurrent_rpcs: int | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.bindings = list(bindings)
        self.health = health.aio.HealthServicer()
        # A service with metrics of its own passes them, on the registry this listener serves.
        self.metrics = metrics or ServiceMetrics(settings.service_name)
        self.metrics_endpoint = MetricsEndpoint(self.metrics.registry, settings.metrics_port, settings.metrics_host)
        self.interceptor = CallInterceptor(settings.service_token, self.metrics)
        self.server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # Clients re-resolve after scale-out when connections age out. The GOAWAY only
                # stops new calls on the connection: there is no max_connection_age_grace_ms, whose
                # default (unbounded) lets running streams (a long answer) finish on it.
                ("grpc.max_connection_age_ms", round(settings.grpc_max_connection_age_seconds * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10 * 1000),
                # Only a service's workers share its port; gRPC's default SO_REUSEPORT would let a
                # lone server bind a port another listener holds and silently take half its traffic.
                ("grpc.so_reuseport", int(isinstance(settings, WorkersSettings) and settings.worker_index > 0)),
            ],
            maximum_concurrent_rpcs=max_concurrent_rpcs,
        )
        for binding in self.bindings:
            binding.register(binding.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [b.full_name for b in self.bindings]
        reflection.enable_server_reflection([*names, HEALTH_FULL_NAME, reflection.SERVICE_NAME], self.server)
        self.port = 0
        self._stopping = asyncio.Event()
        # Called once the server takes no new calls: each ends the service's endless streams
        # (watches), which would otherwise hold every shutdown for the whole grace.
        self.on_drain: list[Callable[[], None]] = []

    @property
    def service_names(self) -> list[str]:
        """The names health reports a status for: the server as a whole ("") and each service."""
        return ["", *(b.full_name for b in self.bindings)]

    async def start(self) -> int:
        """Bind (port 0 picks a free port) and start serving health as NOT_SERVING."""
        self.port = bind(self.server, self.settings.grpc_host, self.settings.grpc_port)
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        logger.info("gRPC listening on %s:%d", self.settings.grpc_host, self.port)
        self.metrics_endpoint.start()
        return self.port

    async def set_serving(self) -> None:
        """Report SERVING for the server and each service: clients and load balancers send calls,
        and calls are served from now on (until then they are refused as UNAVAILABLE)."""
        self.interceptor.ready = True
        await self._set_status(health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving %s", ", ".join(b.full_name for b in self.bindings))

    async def _set_status(self, status: int) -> None:
        for name in self.service_names:
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Drain: NOT_SERVING, wait for clients to notice, then finish in-flight calls within the grace."""
        await self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.settings.readiness_drain_seconds:
            await asyncio.sleep(self.settings.readiness_drain_seconds)
        logger.info("draining in-flight calls (grace %.1fs)", self.settings.shutdown_grace_seconds)
        stopping = asyncio.ensure_future(self.server.stop(self.settings.shutdown_grace_seconds))
        # Its first step refuses new calls: a watch ended after it reconnects to another replica.
        await asyncio.sleep(0)
        for end_streams in self.on_drain:
            end_streams()
        await stopping
        self.metrics_endpoint.stop()
        logger.info("stopped")

    def request_stop(self) -> None:
        """Stop as SIGTERM would: ``wait_for_stop_signal`` returns."""
        self._stopping.set()

    async def wait_for_stop_signal(self) -> None:
        """Block until SIGTERM/SIGINT (or ``request_stop``)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self._stopping.wait()
