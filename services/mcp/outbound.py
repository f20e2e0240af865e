"""The outbound guard for the MCP SDK's HTTP client (httpx2): every request to a remote MCP server
goes through ``check_destination`` and is sent pinned to the addresses that passed.

The SDK follows no redirect off the server's origin, and does no SSRF checks of its own: this
transport is what keeps a configured URL (or a DNS answer that changes under it) from reaching
the cluster's private network.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable

import httpx2

from services.common.http_guard import OutboundPolicy, ResolveName, check_destination, resolve_with_system


@functools.cache
def _tls() -> ssl.SSLContext:
    # Loading the trust store costs ~60 ms of CPU: once per process, not once per user session.
    return httpx2.create_ssl_context()


class GuardedTransport(httpx2.AsyncBaseTransport):
    """Checks each request's URL against the current policy, then connects to a checked address.

    The request keeps its Host header and, for https, its SNI name and certificate check: only
    the address it connects to is replaced, so a second resolution cannot differ from the checked one.
    """

    def __init__(self, policy: Callable[[], OutboundPolicy], resolve_name: ResolveName = resolve_with_system) -> None:
        self._policy = policy
        self._resolve_name = resolve_name
        self._inner = httpx2.AsyncHTTPTransport(verify=_tls())
        # The latest 401's WWW-Authenticate value: the SDK reports any refusal as one generic error.
        self.challenge: str | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` to an address the guard allowed; DestinationRefused otherwise."""
        checked = await check_destination(str(request.url), self._policy(), self._resolve_name)
        if request.url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": checked.host}
        url = request.url
        request.url = url.copy_with(host=str(checked.addresses[0]))
        try:
            response = await self._inner.handle_async_request(request)
        finally:
            # The SDK judges redirects, and httpx logs requests, by the URL: the named one, never the address.
            request.url = url
        if response.status_code == 401:
            self.challenge = response.headers.get("www-authenticate", "")
        elif response.is_success:
            self.challenge = None
        return response

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._inner.aclose()
