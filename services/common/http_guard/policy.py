"""What an admin allows outbound requests to reach, and the errors the guard raises when it says no."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.common.errors import ErrorClass, InvalidInput, PermissionDenied

from .addresses import parse_ipv4_literal, parse_ipv6_literal

MIB = 1024 * 1024

_SEPARATORS = re.compile(r"[\s,;]+")


class DestinationRefused(PermissionDenied):
    """The guard refused a URL before connecting; ``message`` names the reason, never the full URL."""

    default_class = ErrorClass.POLICY


class ResponseTooLarge(InvalidInput):
    """The (decompressed) response body passed the policy's size cap; reading stopped there."""

    default_class = ErrorClass.POLICY

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message, field="url")
        self.limit = limit


def normalize_hostname(name: str) -> str:
    """The form hosts are compared in: lower case, no trailing dot, canonical IP literals."""
    name = name.strip().lower().removesuffix(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        parsed = parse_ipv6_literal(name)
        return str(parsed[0]) if parsed else name
    address = parse_ipv4_literal(name)
    return str(address) if address else name


def parse_allowed_hostnames(value: str | None) -> frozenset[str]:
    """Parse the plugin config's ``allowedUpstreamHostnames``: comma, space or newline separated.

    Entries are normalised like request hosts so that ``Example.COM.`` and ``example.com`` match;
    ``*.example.com`` entries keep their wildcard.
    """
    if not value:
        return frozenset()
    return frozenset(normalize_hostname(entry) for entry in _SEPARATORS.split(value) if entry.strip())


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """Exact match, ``*.example.com`` matching any subdomain (at any depth) but not the apex, or
    ``*`` matching every host (as the plugin reads it)."""
    for pattern in patterns:
        if pattern == "*":
            return True
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]):
                return True
        elif host == pattern:
            return True
    return False


def domain_denied(host: str, domains: Iterable[str]) -> str | None:
    """The denied domain ``host`` equals or lies under (label-wise suffix), or ``None``."""
    for domain in domains:
        if host == domain or host.endswith("." + domain):
            return domain
    return None


def _normalized(names: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_hostname(name) for name in names if name.strip())


@dataclass(frozen=True)
class OutboundPolicy:
    """Where guarded requests may go and how much they may take.

    ``allowed_hostnames`` empty means any public host; non-empty means only these (``*.x.com``
    wildcards allowed). ``private_allowed_hostnames`` are hosts an admin allowed to resolve to
    private, loopback or link-local addresses; they still have to pass the allowlist.
    ``max_response_bytes`` caps the decompressed body. ``total_timeout`` bounds a whole request
    (resolution, redirects and body); ``read_timeout`` bounds the silence between two reads, which
    is all that bounds a stream.
    """

    allowed_hostnames: frozenset[str] = frozenset()
    private_allowed_hostnames: frozenset[str] = frozenset()
    denied_domains: frozenset[str] = frozenset()
    allowed_schemes: frozenset[str] = frozenset({"https", "http"})
    max_redirects: int = 5
    max_response_bytes: int = 5 * MIB
    connect_timeout: float = 10.0
    total_timeout: float = 30.0
    read_timeout: float = 60.0
    _normal: tuple[frozenset[str], frozenset[str], frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_redirects < 0 or self.max_response_bytes <= 0:
            raise ValueError("max_redirects must be >= 0 and max_response_bytes > 0")
        if min(self.connect_timeout, self.total_timeout, self.read_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        # Normalised once here so each request compares against canonical names.
        object.__setattr__(
            self,
            "_normal",
            (
                _normalized(self.allowed_hostnames),
                _normalized(self.private_allowed_hostnames),
                _normalized(domain.removeprefix("*.") for domain in self.denied_domains),
            ),
        )

    def permits_host(self, host: str) -> bool:
        """Whether the allowlist lets ``host`` (already normalised) through."""
        allowed = self._normal[0]
        return not allowed or host_matches(host, allowed)

    def permits_private(self, host: str) -> bool:
        """Whether an admin allowed ``host`` to resolve to non-public addresses."""
        return host_matches(host, self._normal[1])

    def denied_domain(self, host: str) -> str | None:
        """The denylisted domain that covers ``host``, if any."""
        return domain_denied(host, self._normal[2])
