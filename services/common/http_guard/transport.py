"""The connector side of the guard: connect only to addresses ``check_destination`` approved.

aiohttp asks its resolver for addresses while it connects. ``PinnedResolver`` answers only from the
pins the guard set for the current request (a context variable, so concurrent requests never see
each other's), and never consults DNS: a name that re-resolves to another address between the
check and the connect (DNS rebinding) cannot change where the socket goes. The URL keeps the
original hostname, so the Host header and TLS SNI/certificate checks still use it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.http import new_client_session

from .addresses import IPAddress
from .destination import CheckedDestination
from .policy import OutboundPolicy

# A declaration, not state: each request sets its own value with ``pinned_to``.
_PIN_VAR: ContextVar[Mapping[tuple[str, int], tuple[IPAddress, ...]] | None] = ContextVar(
    "http_guard_pins", default=None
)


class GuardedConnectorMismatch(ValueError):
    """A session handed to the guard was not built by ``new_guarded_session`` for the same policy."""


def _pins() -> Mapping[tuple[str, int], tuple[IPAddress, ...]]:
    return _PIN_VAR.get() or {}


class PinnedResolver(AbstractResolver):
    """Answers only with the addresses pinned for the running request; never asks DNS."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The pinned addresses for ``host:port``; ``OSError`` for a name the guard did not check."""
        addresses = _pins().get((host, port), ())
        results: list[ResolveResult] = []
        for address in addresses:
            address_family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, address_family):
                continue
            results.append(
                ResolveResult(
                    hostname=host,
                    host=str(address),
                    port=port,
                    family=address_family,
                    proto=socket.IPPROTO_TCP,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not results:
            raise OSError(f"{host} was not checked by the outbound guard")
        return results

    async def close(self) -> None:
        """Nothing to release: the resolver holds no sockets or threads."""


class GuardedConnector(aiohttp.TCPConnector):
    """A TCP connector that resolves through ``PinnedResolver`` only and is bound to one policy.

    Pooled keep-alive connections are reused per (host, port, TLS); binding the pool to one policy
    means a reused connection was always approved under the same rules as the request reusing it.
    """

    def __init__(self, policy: OutboundPolicy, *, pool_size: int = 100) -> None:
        super().__init__(
            resolver=PinnedResolver(),
            # aiohttp's DNS cache would answer from an earlier, differently checked lookup.
            use_dns_cache=False,
            limit=pool_size,
            limit_per_host=pool_size,
        )
        self.policy = policy


def new_guarded_session(policy: OutboundPolicy, *, pool_size: int = 100) -> aiohttp.ClientSession:
    """A session from the one factory, with the pinning connector and no proxy from the environment.

    ``trust_env`` is off because a proxy resolves names itself, which would undo the pinning.
    Whole-request time is bounded by the client with ``policy.total_timeout``; the session bounds
    connecting and the silence between reads, which is what bounds a long-lived stream.
    """
    return new_client_session(
        total_timeout=None,
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        trust_env=False,
        connector=GuardedConnector(policy, pool_size=pool_size),
        # Cookies set by one upstream must never ride along on another caller's request.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def ensure_guarded(session: aiohttp.ClientSession, policy: OutboundPolicy) -> None:
    """Raise ``GuardedConnectorMismatch`` unless ``session`` pins addresses under ``policy``."""
    connector = session.connector
    if not isinstance(connector, GuardedConnector) or connector.policy != policy:
        raise GuardedConnectorMismatch("session must come from new_guarded_session(policy)")
    if session.trust_env:
        raise GuardedConnectorMismatch("a guarded session must not take proxies from the environment")


@contextlib.contextmanager
def pinned_to(destination: CheckedDestination) -> Iterator[None]:
    """Within this block, the resolver answers ``destination``'s host with its checked addresses."""
    token = _PIN_VAR.set({(destination.host, destination.port): destination.addresses})
    try:
        yield
    finally:
        _PIN_VAR.reset(token)
