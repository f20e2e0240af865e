"""Built-in web search: Brave and Google Custom Search providers, and fetching result pages."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from services.common.http_guard import GuardedHttpClient
from services.tools.config import WebSearchSettings

MAX_SEARCHES_PER_CONVERSATION = 3

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class SearchHit:
    """One web result: what the model reads and the answer may cite."""

    title: str
    url: str
    snippet: str = ""


class SearchProvider(Protocol):
    """One search API. Raises ToolFailed for provider errors; never puts the API key in a message."""

    async def search(self, client: GuardedHttpClient, settings: WebSearchSettings, query: str) -> list[SearchHit]:
        """The API's results for ``query``, in its order, through the guarded client."""
        ...


def normalise_query(query: str) -> str:
    """The form queries are compared in: "Rust  ASYNC" and "rust async" are the same search."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", query).casefold()).strip()
