"""``allowedUpstreamHostnames`` for the upstreams an admin configured: LLM providers, embedding
providers, transcription.

Those URLs are the admin's own, often on a private network (a vLLM or Ollama beside the cluster),
so they skip the address checks ``GuardedHttpClient`` makes of URLs users and models choose; the
allowlist still applies, as the plugin applies it to every upstream call: to each request and to
each redirect it follows, before anything connects. An empty list allows every host; a request
made before the configuration arrived waits for it (a process that just started), and fails when
it does not come.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from services.common.errors import UpstreamUnavailable

from .policy import DestinationRefused, OutboundPolicy, normalize_hostname, parse_allowed_hostnames

logger = logging.getLogger(__name__)

# How long a request waits for the first configuration: the registry's watch reconnects within
# a few seconds of a start; past this the registry is down and the error says so.
CONFIG_WAIT_SECONDS = 10.0


class UpstreamAllowlist:
    """An aiohttp client middleware refusing requests to hosts the allowlist leaves out.

    ``update`` takes the plugin configuration's value whenever it changes; requests after that
    are checked against it. A refusal raises ``DestinationRefused`` and sends nothing. A request
    before the first ``update`` waits ``wait_seconds`` for it, then raises ``UpstreamUnavailable``.
    """

    def __init__(self, wait_seconds: float = CONFIG_WAIT_SECONDS) -> None:
        self._policy = OutboundPolicy()
        self._known = asyncio.Event()
        self._wait_seconds = wait_seconds

    def update(self, allowed_hostnames: str) -> None:
        """Check later requests against ``allowed_hostnames`` (the plugin configuration's value)."""
        self._policy = OutboundPolicy(allowed_hostnames=parse_allowed_hostnames(allowed_hostnames))
        self._known.set()

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send ``request`` when its host is allowed; raise ``DestinationRefused`` otherwise."""
        if not self._known.is_set():
            try:
                await asyncio.wait_for(self._known.wait(), self._wait_seconds)
            except TimeoutError:
                raise UpstreamUnavailable(
                    "the plugin configuration (allowedUpstreamHostnames) has not arrived; try again", retry_after=1
                ) from None
        host = normalize_hostname(request.url.raw_host or "")
        if not self._policy.permits_host(host):
            # The host goes to the admin's log only: a user reading the error may not know it.
            logger.warning("refused a request to %s: the host is not in allowedUpstreamHostnames", host)
            raise DestinationRefused(
                "the service's host is not in the allowed upstream hostnames; "
                "an admin must add it to allowedUpstreamHostnames"
            )
        return await handler(request)
