"""The outbound transport of remote MCP sessions: what each new session costs to set up."""

from __future__ import annotations

import ssl

from services.common.http_guard import OutboundPolicy
from services.mcp.outbound import GuardedTransport


def _tls_of(transport: GuardedTransport) -> ssl.SSLContext:
    context = transport._inner._pool._ssl_context  # the TLS settings its connections use
    assert isinstance(context, ssl.SSLContext)
    return context


def test_every_session_transport_shares_one_tls_context() -> None:
    # Each user session gets its own transport; loading the trust store for each cost ~60 ms of
    # CPU per session opened (measured with `python -m bench mcp_server`).
    policy = OutboundPolicy()
    first, second = GuardedTransport(lambda: policy), GuardedTransport(lambda: policy)
    assert _tls_of(first) is _tls_of(second)
    assert _tls_of(first).verify_mode == ssl.CERT_REQUIRED  # still verifying certificates
