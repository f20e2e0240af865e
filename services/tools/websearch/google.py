"""Google Custom Search JSON API (``GET /customsearch/v1?key=&cx=&q=&num=``)."""

from __future__ import annotations

from typing import Any

from yarl import URL

from services.common.http_guard import GuardedHttpClient
from services.common.telemetry import tracer
from services.tools.config import WebSearchSettings
from services.tools.websearch import SearchHit
from services.tools.websearch.responses import checked_json


class GoogleSearch:
    """Web results from Google: ``items[]`` with ``title``, ``link`` and ``snippet``."""

    async def search(self, client: GuardedHttpClient, settings: WebSearchSettings, query: str) -> list[SearchHit]:
        """Up to ``settings.result_limit`` results for ``query`` (the API allows at most 10)."""
        # The key travels in the query string, as the API requires; the guard's errors name
        # only the host, and nothing here logs the URL.
        url = URL(settings.endpoint).update_query(
            {"key": settings.api_key, "cx": settings.engine_id, "q": query, "num": str(settings.result_limit)}
        )
        with tracer(__name__).start_as_current_span("google web search"):
            response = await client.request("GET", url, headers={"Accept": "application/json"})
            body = checked_json(response, "Google")
        items = body.get("items", []) if isinstance(body, dict) else []
        return [hit for hit in map(_hit, items if isinstance(items, list) else []) if hit is not None][
            : settings.result_limit
        ]


def _hit(item: Any) -> SearchHit | None:
    if not isinstance(item, dict) or not isinstance(item.get("link"), str):
        return None
    return SearchHit(title=str(item.get("title", "")), url=item["link"], snippet=str(item.get("snippet", "")))
