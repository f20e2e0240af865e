"""gRPC client side shared by every service: channels, identity/deadline propagation, errors.

One channel per target (cached by ``ChannelPool``), with keepalive, explicit message size limits,
round-robin balancing over every address a ``dns:///`` target resolves to, and retries from the
service config for the idempotent unary methods a caller names — never for streams or writes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc

from services.common import identity
from services.common.errors_map import domain_error_from_rpc_error
from services.common.grpc_server import MAX_MESSAGE_BYTES
from services.common.settings import CommonSettings

T = TypeVar("T")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

# Deadline slack kept for the hop back, so the callee fails before the caller's own deadline.
_DEADLINE_MARGIN_SECONDS = 0.05


def _service_config(idempotent_methods: Iterable[tuple[str, str]]) -> str:
    names = [{"service": svc, "method": m} for svc, m in idempotent_methods]
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if names:
        config["methodConfig"] = [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    return json.dumps(config)


class _IdentityAndDeadline:
    """Copies the current identity and the service credential onto every call, and bounds its
    timeout by what is left of the incoming call's deadline."""

    def __init__(self, service_token: str, default_timeout: float) -> None:
        self._token = service_token
        self._default_timeout = default_timeout

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        present = {key for key, _ in metadata}
        for key, value in identity.identity().to_metadata():
            if key not in present:
                metadata.add(key, value)
        if self._token:
            metadata.add(identity.SERVICE_TOKEN_KEY, self._token)
        timeout = details.timeout if details.timeout is not None else self._default_timeout
        remaining = identity.remaining_seconds()
        if remaining is not None:
            timeout = min(timeout, max(remaining - _DEADLINE_MARGIN_SECONDS, 0.001))
        return grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )


# grpc.aio files each interceptor under the first kind it matches (an if/elif on isinstance), so
# one object implementing both kinds would never see server-streaming calls: one class per kind.
class _UnaryIdentityAndDeadline(_IdentityAndDeadline, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request], Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        return await continuation(self._details(client_call_details), request)


class _StreamIdentityAndDeadline(_IdentityAndDeadline, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request], Awaitable[grpc.aio.UnaryStreamCall[_Request, _Response]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryStreamCall[_Request, _Response]:
        return await continuation(self._details(client_call_details), request)


def create_channel(
    target: str,
    *,
    service_token: str = "",
    default_timeout: float = 10.0,
    idempotent_methods: Iterable[tuple[str, str]] = (),
) -> grpc.aio.Channel:
    """An insecure channel (the cluster network is private; mTLS belongs to the mesh)."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 1),
        # Peers in the cluster restart and scale out often: the default reconnect backoff grows
        # toward two minutes, during which every call fails fast. Cap it at a few seconds.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 3000),
        ("grpc.service_config", _service_config(idempotent_methods)),
    ]
    interceptors: list[grpc.aio.ClientInterceptor] = [
        _UnaryIdentityAndDeadline(service_token, default_timeout),
        _StreamIdentityAndDeadline(service_token, default_timeout),
    ]
    return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)


class ChannelPool:
    """One channel per target for the life of a process."""

    def __init__(self, *, service_token: str = "", default_timeout: float = 10.0, retries: bool = True) -> None:
        self._token = service_token
        self._timeout = default_timeout
        self._retries = retries
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> ChannelPool:
        """The pool a service dials its peers with: its credential, deadline and retry settings."""
        return cls(
            service_token=settings.service_token,
            default_timeout=settings.rpc_timeout_seconds,
            retries=settings.grpc_client_retries,
        )

    def get(self, target: str, idempotent_methods: Iterable[tuple[str, str]] = ()) -> grpc.aio.Channel:
        """The channel to ``target``, created on first use (``idempotent_methods`` count only then,
        and only with ``retries``)."""
        if target not in self._channels:
            self._channels[target] = create_channel(
                target,
                service_token=self._token,
                default_timeout=self._timeout,
                idempotent_methods=idempotent_methods if self._retries else (),
            )
        return self._channels[target]

    async def close(self) -> None:
        """Close every channel (their calls end) and forget them."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def idempotent(
    service_descriptor: Any, prefixes: tuple[str, ...] = ("Get", "List", "Check", "Count")
) -> list[tuple[str, str]]:
    """The read-only unary methods of a service descriptor, by name convention."""
    return [
        (service_descriptor.full_name, m.name)
        for m in service_descriptor.methods
        if m.name.startswith(prefixes) and not m.server_streaming and not m.client_streaming
    ]


async def unary(call: Callable[..., Awaitable[T]], request: Any, **kwargs: Any) -> T:
    """Make a unary call; a failed call raises the domain error the callee raised."""
    try:
        return await call(request, **kwargs)
    except grpc.aio.AioRpcError as err:
        raise domain_error_from_rpc_error(err) from None


async def stream(call: Callable[..., Any], request: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
    """Iterate a server stream; a failed call raises the domain error the callee raised."""
    rpc = call(request, **kwargs)
    try:
        async for item in rpc:
            yield item
    except grpc.aio.AioRpcError as err:
        raise domain_error_from_rpc_error(err) from None
    finally:
        rpc.cancel()


__all__ = ["ChannelPool", "create_channel", "idempotent", "stream", "unary"]
