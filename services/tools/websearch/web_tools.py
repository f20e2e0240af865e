"""The ``web_search`` and ``web_fetch`` tools: limits, denylist, citations, and the guard.

Limits per conversation (3 searches, no repeated query) are counted in PostgreSQL by
``SearchLedger`` before the provider is called, so they hold across restarts and replicas. Every
request (the search API itself and each fetched page) goes through ``GuardedHttpClient`` with the
admin's ``allowedUpstreamHostnames``; only hosts the operator listed in
``AGENTS_TOOLS_PRIVATE_ALLOWED_HOSTNAMES`` may resolve to private addresses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from yarl import URL

from services.common.errors import InvalidInput, UpstreamUnavailable
from services.common.http_guard import DestinationRefused, GuardedHttpClient, OutboundPolicy, ResponseTooLarge
from services.common.http_guard.policy import domain_denied, normalize_hostname
from services.tools.config import ToolsConfig
from services.tools.results import Citation, ToolFailed, ToolResult
from services.tools.store import SearchLedger
from services.tools.websearch import SearchHit, SearchProvider, normalise_query
from services.tools.websearch.brave import BraveSearch
from services.tools.websearch.google import GoogleSearch
from services.tools.websearch.page_fetch import fetch_page

_PROVIDERS: dict[str, SearchProvider] = {"brave": BraveSearch(), "google": GoogleSearch()}


@dataclass(frozen=True)
class OutboundLimits:
    """Operator settings for tool requests."""

    private_allowed_hostnames: frozenset[str] = frozenset()
    max_response_bytes: int = 5 * 1024 * 1024
    total_timeout: float = 20.0
    page_max_chars: int = 20_000


def _host(url: str) -> str:
    try:
        return normalize_hostname(URL(url).host or "")
    except (ValueError, TypeError):
        return ""


class WebTools:
    """Handlers of ``web_search`` and ``web_fetch``."""

    def __init__(self, ledger: SearchLedger, limits: OutboundLimits) -> None:
        self._ledger = ledger
        self._limits = limits

    def _policy(self, config: ToolsConfig, *, denylist: bool) -> OutboundPolicy:
        return OutboundPolicy(
            allowed_hostnames=config.allowed_upstream_hostnames,
            private_allowed_hostnames=self._limits.private_allowed_hostnames,
            denied_domains=config.web_search.domain_denylist if denylist else frozenset(),
            max_response_bytes=self._limits.max_response_bytes,
            total_timeout=self._limits.total_timeout,
        )

    async def web_search(
        self, args: dict[str, Any], *, config: ToolsConfig, conversation_id: str, tool_call_id: str
    ) -> ToolResult:
        """Search once (counted), drop denylisted domains, and answer numbered results with citations."""
        settings = config.web_search
        if not settings.configured:
            raise ToolFailed("web search is not configured")
        if not conversation_id:
            raise InvalidInput("web_search needs context.conversation_id", field="context.conversation_id")
        query = " ".join(args["query"].split())
        reservation = await self._ledger.reserve(conversation_id, normalise_query(query), tool_call_id)
        if not reservation.allowed:
            raise ToolFailed(f"already searched for {query!r} in this conversation; use those results")
        async with GuardedHttpClient(self._policy(config, denylist=False)) as client:
            with _outbound_failures():
                hits = await _PROVIDERS[settings.provider].search(client, settings, query)
        hits = [h for h in hits if domain_denied(_host(h.url), settings.domain_denylist) is None]
        await self._ledger.remember_results(conversation_id, [(h.url, h.title) for h in hits])
        if not hits:
            return ToolResult(f"No web results for {query!r}.")
        return ToolResult(_render(query, hits), citations=tuple(Citation(h.url, h.title, h.snippet) for h in hits))

    async def web_fetch(self, args: dict[str, Any], *, config: ToolsConfig, conversation_id: str) -> ToolResult:
        """The text of a page a search in this conversation returned, fetched through the guard."""
        if not config.web_search.configured:
            raise ToolFailed("web search is not configured")
        url = args["url"].strip()
        known_title = await self._ledger.result_title(conversation_id, url) if conversation_id else None
        if known_title is None:
            raise ToolFailed("only URLs returned by web_search in this conversation can be fetched")
        async with GuardedHttpClient(self._policy(config, denylist=True)) as client:
            with _outbound_failures():
                title, text = await fetch_page(client, url, max_chars=self._limits.page_max_chars)
        title = title or known_title
        return ToolResult(
            f"{title}\n{url}\n\n{text}" if title else f"{url}\n\n{text}", citations=(Citation(url, title),)
        )


def _render(query: str, hits: list[SearchHit]) -> str:
    lines = [f"Web results for {query!r} (cite by URL):"]
    for n, hit in enumerate(hits, 1):
        lines.append(f"{n}. {hit.title}\n   {hit.url}\n   {hit.snippet}")
    return "\n".join(lines)


@contextlib.contextmanager
def _outbound_failures() -> Iterator[None]:
    """Turn guard refusals and upstream failures into tool errors the model can explain."""
    try:
        yield
    except DestinationRefused as exc:
        raise ToolFailed(f"request refused: {exc.message}") from None
    except (ResponseTooLarge, UpstreamUnavailable) as exc:
        raise ToolFailed(exc.message) from None
