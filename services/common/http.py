"""The one factory for outbound aiohttp sessions.

Every service builds its HTTP clients here so that timeouts, connection pooling and proxy handling
(``HTTP_PROXY``/``HTTPS_PROXY`` via ``trust_env``) are the same everywhere. Requests whose URL a
user, a model or a remote server can influence use ``services.common.http_guard`` instead, which
wraps this factory with the SSRF guard.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Sequence

import aiohttp
import aiohttp.abc

from services.common.telemetry import http_client_trace_configs


def new_client_session(
    *,
    total_timeout: float | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    pool_size: int = 100,
    trust_env: bool = True,
    connector: aiohttp.BaseConnector | None = None,
    headers: dict[str, str] | None = None,
    cookie_jar: aiohttp.abc.AbstractCookieJar | None = None,
    middlewares: Sequence[aiohttp.ClientMiddlewareType] = (),
) -> aiohttp.ClientSession:
    """A pooled session. ``read_timeout`` bounds the gap between two reads, not the whole body;
    ``middlewares`` see every request, redirects included (an allowlist, a trace)."""
    timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout, sock_read=read_timeout)
    if connector is None:
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=pool_size, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        timeout=timeout,
        connector=connector,
        trust_env=trust_env and environment_configures_requests(),
        headers=headers,
        cookie_jar=cookie_jar,
        raise_for_status=False,
        middlewares=middlewares,
        trace_configs=http_client_trace_configs(),
    )


def environment_configures_requests() -> bool:
    """Whether ``trust_env`` could change a request: a ``*_proxy`` variable or a netrc file.

    With ``trust_env`` aiohttp looks both up on a worker thread for every request (two thread
    hops before a provider call starts, which lands on time to first token). When the
    environment sets neither, which is the usual deployment, the session is built without
    ``trust_env``: the same requests, without the lookups. Read once, when a session is built.
    """
    if urllib.request.getproxies():
        return True
    netrc = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    return os.path.exists(netrc) or os.path.exists(os.path.join(os.path.expanduser("~"), "_netrc"))
