"""The outbound-HTTP guard every URL a user, a model or a remote server can influence goes through.

Such requests (today the web search API and the pages it fetches) send through
``GuardedHttpClient``: scheme check, hostname allow/deny lists, every IP spelling normalised,
resolve-then-pin (no private ranges unless an admin allowed that host), every redirect re-checked,
decompressed response size and time capped. Upstreams an admin configured (LLM providers,
embeddings, transcription) pass only the hostname allowlist: ``UpstreamAllowlist``.
"""

from __future__ import annotations

from .addresses import parse_ipv4_literal, refusal_reason
from .client import GuardedHttpClient
from .destination import CheckedDestination, ResolveName, check_destination, resolve_with_system
from .policy import (
    DestinationRefused,
    OutboundPolicy,
    ResponseTooLarge,
    normalize_hostname,
    parse_allowed_hostnames,
)
from .responses import GuardedResponse, GuardedStream
from .transport import GuardedConnector, GuardedConnectorMismatch, new_guarded_session
from .upstream import UpstreamAllowlist

__all__ = [
    "CheckedDestination",
    "DestinationRefused",
    "GuardedConnector",
    "GuardedConnectorMismatch",
    "GuardedHttpClient",
    "GuardedResponse",
    "GuardedStream",
    "OutboundPolicy",
    "ResolveName",
    "ResponseTooLarge",
    "UpstreamAllowlist",
    "check_destination",
    "new_guarded_session",
    "normalize_hostname",
    "parse_allowed_hostnames",
    "parse_ipv4_literal",
    "refusal_reason",
    "resolve_with_system",
]
