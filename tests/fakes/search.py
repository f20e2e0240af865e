"""Fake Brave Search and Google Custom Search APIs, plus pages to fetch, on one loopback server.

Answers use the real response shapes: Brave's ``WebSearchApiResponse`` (``type: "search"``,
``query.original``, ``web.results[]`` with ``title``/``url``/``description``/``meta_url``) and
Google's ``customsearch#search`` (``items[]`` with ``title``/``link``/``displayLink``/``snippet``),
and their error bodies for a bad key. Tests set the results per query and read what was asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from yarl import URL

BRAVE_PATH = "/res/v1/web/search"
GOOGLE_PATH = "/customsearch/v1"


@dataclass
class FakeResult:
    title: str
    url: str
    snippet: str = ""


@dataclass
class SearchCall:
    provider: str
    query: str
    count: int
    key: str
    engine_id: str = ""


@dataclass
class FakeSearch:
    """The server. ``results[query]`` answers a query; unknown queries answer no results."""

    host: str = "127.0.0.1"
    brave_key: str = "brave-test-key"
    google_key: str = "google-test-key"
    google_cx: str = "test-engine"
    results: dict[str, list[FakeResult]] = field(default_factory=dict)
    pages: dict[str, tuple[int, dict[str, str], str]] = field(default_factory=dict)
    calls: list[SearchCall] = field(default_factory=list)
    page_requests: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def page(self, path: str, body: str, *, status: int = 200, headers: dict[str, str] | None = None) -> str:
        """Serve ``body`` at ``path`` (HTML unless headers say otherwise); returns its URL."""
        self.pages[path] = (status, {"Content-Type": "text/html; charset=utf-8", **(headers or {})}, body)
        return f"{self.base_url}{path}"

    def redirect(self, path: str, location: str) -> str:
        """Answer ``path`` with a 302 to ``location``; returns its URL."""
        self.pages[path] = (302, {"Location": location}, "")
        return f"{self.base_url}{path}"

    async def __aenter__(self) -> FakeSearch:
        app = web.Application()
        app.router.add_get(BRAVE_PATH, self._brave)
        app.router.add_get(GOOGLE_PATH, self._google)
        app.router.add_get("/{tail:.*}", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _brave(self, request: web.Request) -> web.Response:
        key = request.headers.get("X-Subscription-Token", "")
        if key != self.brave_key:
            # Brave's error envelope for an invalid subscription token.
            return web.json_response(
                {
                    "type": "ErrorResponse",
                    "error": {"id": "e1", "status": 401, "code": "SUBSCRIPTION_TOKEN_INVALID", "detail": "bad token"},
                    "time": 0,
                },
                status=401,
            )
        query = request.query.get("q", "")
        count = int(request.query.get("count", "20"))
        self.calls.append(SearchCall("brave", query, count, key))
        items = self.results.get(query, [])[:count]
        body: dict[str, Any] = {"type": "search", "query": {"original": query, "more_results_available": False}}
        if items:
            body["web"] = {
                "type": "search",
                "family_friendly": True,
                "results": [
                    {
                        "type": "search_result",
                        "title": r.title,
                        "url": r.url,
                        "description": r.snippet,
                        "is_source_local": False,
                        "is_source_both": False,
                        "language": "en",
                        "family_friendly": True,
                        "meta_url": {"scheme": URL(r.url).scheme, "hostname": URL(r.url).host or "", "path": ""},
                    }
                    for r in items
                ],
            }
        return web.json_response(body)

    async def _google(self, request: web.Request) -> web.Response:
        key, cx = request.query.get("key", ""), request.query.get("cx", "")
        if key != self.google_key:
            return web.json_response(
                {
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "errors": [{"message": "API key not valid.", "domain": "global", "reason": "badRequest"}],
                        "status": "INVALID_ARGUMENT",
                    }
                },
                status=400,
            )
        query = request.query.get("q", "")
        num = int(request.query.get("num", "10"))
        self.calls.append(SearchCall("google", query, num, key, cx))
        items = self.results.get(query, [])[:num]
        body: dict[str, Any] = {
            "kind": "customsearch#search",
            "queries": {"request": [{"title": "Google Custom Search", "searchTerms": query, "count": num, "cx": cx}]},
            "searchInformation": {"searchTime": 0.1, "totalResults": str(len(items))},
        }
        if items:
            body["items"] = [
                {
                    "kind": "customsearch#result",
                    "title": r.title,
                    "htmlTitle": r.title,
                    "link": r.url,
                    "displayLink": URL(r.url).host or "",
                    "snippet": r.snippet,
                    "htmlSnippet": r.snippet,
                    "formattedUrl": r.url,
                }
                for r in items
            ]
        return web.json_response(body)

    async def _page(self, request: web.Request) -> web.Response:
        self.page_requests.append(request.path)
        status, headers, body = self.pages.get(request.path, (404, {"Content-Type": "text/plain"}, "not found"))
        return web.Response(status=status, headers=headers, text=body if body else None)
