"""Brave Search API (``GET /res/v1/web/search``, ``X-Subscription-Token`` header)."""

from __future__ import annotations

from typing import Any

from yarl import URL

from services.common.http_guard import GuardedHttpClient
from services.common.telemetry import tracer
from services.tools.config import WebSearchSettings
from services.tools.results import ToolFailed
from services.tools.websearch import SearchHit
from services.tools.websearch.responses import checked_json


class BraveSearch:
    """Web results from Brave: ``web.results[]`` with ``title``, ``url`` and ``description``."""

    async def search(self, client: GuardedHttpClient, settings: WebSearchSettings, query: str) -> list[SearchHit]:
        """Up to ``settings.result_limit`` results for ``query``."""
        with tracer(__name__).start_as_current_span("brave web search"):
            response = await client.request(
                "GET",
                _with_query(settings.endpoint, {"q": query, "count": str(settings.result_limit)}),
                headers={"Accept": "application/json", "X-Subscription-Token": settings.api_key},
            )
            body = checked_json(response, "Brave")
        return [hit for hit in map(_hit, _results(body)) if hit is not None][: settings.result_limit]


def _with_query(url: str, params: dict[str, str]) -> str:
    return str(URL(url).update_query(params))


def _results(body: Any) -> list[Any]:
    web = body.get("web") if isinstance(body, dict) else None
    results = web.get("results") if isinstance(web, dict) else None
    if results is None:
        if isinstance(body, dict) and body.get("type") == "search":
            return []  # a search with no web results simply has no "web" section
        raise ToolFailed("Brave answered without web results")
    return results if isinstance(results, list) else []


def _hit(item: Any) -> SearchHit | None:
    if not isinstance(item, dict) or not isinstance(item.get("url"), str):
        return None
    return SearchHit(title=str(item.get("title", "")), url=item["url"], snippet=str(item.get("description", "")))
