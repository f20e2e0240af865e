"""IP literals and address classes: which destinations the guard treats as non-public.

Two jobs, both pure: turn a URL host written in any of the legacy IPv4 spellings (``2130706433``,
``0177.0.0.1``, ``0x7f.1``, ``127.1``) or an IPv6 literal with a zone id into one canonical address,
and say why an address must not be reached from a server (loopback, private, link-local, ...),
looking through the IPv6 forms that embed an IPv4 address (mapped, 6to4, NAT64).
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HEX_PART = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"[0-9]+")

# Ordered: the first network that contains an address names the reason it is refused.
_IPV4_CLASSES: tuple[tuple[ipaddress.IPv4Network, str], ...] = tuple(
    (ipaddress.IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/32", "an unspecified address"),
        ("0.0.0.0/8", "a 'this network' address"),
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT address"),
        ("169.254.0.0/16", "a link-local address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "a broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
        ("192.0.0.0/24", "a reserved address"),
        ("192.0.2.0/24", "a reserved address"),
        ("192.88.99.0/24", "a reserved address"),
        ("198.18.0.0/15", "a reserved address"),
        ("198.51.100.0/24", "a reserved address"),
        ("203.0.113.0/24", "a reserved address"),
    )
)

_IPV6_CLASSES: tuple[tuple[ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "an unspecified address"),
        ("::1/128", "a loopback address"),
        # IPv4-compatible addresses are deprecated; nothing public is reached through them.
        ("::/96", "a reserved address"),
        # Includes the SIIT "IPv4-translated" ::ffff:0:a.b.c.d/96 that Python calls global.
        ("::/8", "a reserved address"),
        ("64:ff9b:1::/48", "a private address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001:db8::/32", "a reserved address"),
        ("100::/64", "a reserved address"),
        ("fc00::/7", "a private address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _ipv4_number(part: str) -> int | None:
    """One dotted part as inet_aton reads it: ``0x`` hex, leading-zero octal, else decimal."""
    if _HEX_PART.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL_PART.fullmatch(part):
        return int(part, 8)
    if _DECIMAL_PART.fullmatch(part):
        return int(part, 10)
    return None


def ends_in_number(host: str) -> bool:
    """Whether a URL host must be read as IPv4 (WHATWG "ends in a number"), trailing dot ignored."""
    parts = host.removesuffix(".").split(".")
    last = parts[-1]
    return bool(_DECIMAL_PART.fullmatch(last) or _HEX_PART.fullmatch(last))


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """Read every legacy IPv4 spelling (1-4 parts, each decimal/octal/hex) as the resolver would.

    Returns ``None`` when ``host`` is not an IPv4 literal at all or its numbers are out of range;
    the caller refuses such hosts rather than letting a resolver guess.
    """
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    # The last part fills every byte the earlier parts left (``127.1`` is 127.0.0.1).
    *leading, last = values
    if any(n > 0xFF for n in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def parse_ipv6_literal(host: str) -> tuple[ipaddress.IPv6Address, str] | None:
    """An IPv6 literal (brackets and percent-encoding removed) and its zone id, maybe empty."""
    address, _, zone = host.partition("%")
    try:
        return ipaddress.IPv6Address(address), zone
    except ValueError:
        return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries (mapped, NAT64, 6to4) and the name of that form."""
    if address in _IPV4_MAPPED:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why a server must not connect to ``address`` (e.g. "a loopback address"), or ``None``."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            inner, form = carried
            reason = refusal_reason(inner)
            return f"{reason} ({form} {inner})" if reason else None
        for network6, reason in _IPV6_CLASSES:
            if address in network6:
                return reason
    else:
        for network4, reason in _IPV4_CLASSES:
            if address in network4:
                return reason
    # Whatever the tables miss but IANA does not call globally reachable is refused too.
    return None if address.is_global else "a non-public address"
