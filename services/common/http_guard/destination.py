"""Checking one URL before anything connects: scheme, host, allow/deny lists, resolved addresses.

The result carries the exact addresses that passed, so the transport can connect to those and
nothing else (see ``transport.PinnedResolver``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from yarl import URL

from services.common.errors import UpstreamUnavailable

from .addresses import IPAddress, ends_in_number, parse_ipv4_literal, parse_ipv6_literal, refusal_reason
from .policy import DestinationRefused, OutboundPolicy

ResolveName = Callable[[str, int], Awaitable[Sequence[str]]]
"""Resolves a hostname and port to IP address strings; the fake-able DNS boundary of the guard."""

# Punycode has already turned international names into ASCII; anything else (``%``, ``+``, ``\``)
# means the host is not a name every resolver would read the same way.
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


@dataclass(frozen=True)
class CheckedDestination:
    """A URL that passed every check, rewritten with its canonical host, and its allowed addresses."""

    url: URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


async def resolve_with_system(host: str, port: int) -> list[str]:
    """The system resolver through the loop's ``getaddrinfo`` (a thread, never the loop itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _parse_url(url: str | URL) -> URL:
    try:
        return url if isinstance(url, URL) else URL(url)
    except (ValueError, TypeError) as exc:
        raise DestinationRefused("the URL is malformed") from exc


def _canonical_host(url: URL) -> tuple[str, IPAddress | None, str]:
    """The host as compared and connected to, its IP when it is a literal, and any IPv6 zone id."""
    raw = url.raw_host
    if not raw:
        raise DestinationRefused("the URL has no host")
    if ":" in raw:
        parsed = parse_ipv6_literal(url.host or raw)
        if parsed is None:
            raise DestinationRefused("the URL host is not a valid IPv6 address")
        address, zone = parsed
        return str(address), address, zone
    name = raw.lower().removesuffix(".")
    if ends_in_number(name):
        # Resolvers read ``2130706433`` or ``0x7f.1`` as addresses, so the guard must as well.
        ipv4 = parse_ipv4_literal(name)
        if ipv4 is None:
            raise DestinationRefused(f"host {name} is not a valid IPv4 address")
        return str(ipv4), ipv4, ""
    if not _HOSTNAME.fullmatch(name):
        raise DestinationRefused("the URL host contains characters not allowed in a hostname")
    return name, None, ""


async def _resolve(host: str, port: int, resolve_name: ResolveName) -> tuple[IPAddress, ...]:
    try:
        found = await resolve_name(host, port)
    except OSError as exc:
        raise UpstreamUnavailable(f"could not resolve {host}") from exc
    addresses: list[IPAddress] = []
    for text in found:
        # Link-local answers come back as ``fe80::1%eth0``; the zone does not change the class.
        try:
            address = ipaddress.ip_address(text.partition("%")[0])
        except ValueError as exc:
            raise UpstreamUnavailable(f"resolver returned an invalid address for {host}") from exc
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UpstreamUnavailable(f"could not resolve {host}")
    return tuple(addresses)


async def check_destination(
    url: str | URL, policy: OutboundPolicy, resolve_name: ResolveName = resolve_with_system
) -> CheckedDestination:
    """Refuse ``url`` unless policy allows it; resolve it and refuse if ANY address is non-public.

    Raises ``DestinationRefused`` (a ``PermissionDenied``) naming the reason, or
    ``UpstreamUnavailable`` when the name does not resolve. Nothing here opens a connection.
    """
    parsed = _parse_url(url)
    scheme = parsed.scheme.lower()
    if not parsed.absolute or scheme not in policy.allowed_schemes:
        raise DestinationRefused(f"scheme '{scheme}' is not allowed" if scheme else "the URL is not absolute")
    host, literal, zone = _canonical_host(parsed)
    denied = policy.denied_domain(host)
    if denied is not None:
        raise DestinationRefused(f"host {host} is in the denied domain {denied}")
    if not policy.permits_host(host):
        raise DestinationRefused(f"host {host} is not in the allowed upstream hostnames")
    port = parsed.port
    if port is None or not 0 < port < 65536:
        raise DestinationRefused("the URL has no valid port")

    addresses = (literal,) if literal is not None else await _resolve(host, port, resolve_name)
    if not policy.permits_private(host):
        for address in addresses:
            reason = refusal_reason(address)
            if reason is None:
                continue
            shown = str(address) if literal is not None else f"{host} ({address})"
            raise DestinationRefused(f"destination {shown} is {reason}")
    if zone:
        # A zone names a local interface; there is no public destination that needs one.
        raise DestinationRefused("IPv6 zone identifiers are not allowed")
    if parsed.raw_host != host:
        parsed = parsed.with_host(host)
    return CheckedDestination(url=parsed, host=host, port=port, addresses=addresses)
