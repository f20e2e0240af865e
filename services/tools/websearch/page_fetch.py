"""Fetching a result page for the model: through the guard, denylist applied, HTML reduced to text."""

from __future__ import annotations

import html.parser
import re

from services.common.http_guard import GuardedHttpClient
from services.tools.results import ToolFailed

_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav", "footer", "iframe"})
_BLOCKS = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article"})
_BLANKS = re.compile(r"[ \t\r\f\v]+")
_LINES = re.compile(r"\n\s*\n+")


class _TextExtractor(html.parser.HTMLParser):
    """Readable text of a page: no scripts, styles or navigation; blocks become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIPPED:
            self._skip_depth += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIPPED and self._skip_depth:
            self._skip_depth -= 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip_depth:
            self.parts.append(data)


def page_text(body: str, content_type: str) -> tuple[str, str]:
    """(title, text) of a page; plain text passes through."""
    if "html" not in content_type:
        return "", body.strip()
    parser = _TextExtractor()
    parser.feed(body)
    parser.close()
    text = _BLANKS.sub(" ", "".join(parser.parts))
    text = _LINES.sub("\n\n", "\n".join(line.strip() for line in text.split("\n")))
    return " ".join(parser.title.split()), text.strip()


async def fetch_page(client: GuardedHttpClient, url: str, *, max_chars: int) -> tuple[str, str]:
    """(title, text) of the page at ``url``, cut to ``max_chars``; ToolFailed for non-text answers."""
    response = await client.request("GET", url, headers={"Accept": "text/html, text/plain;q=0.9"})
    if response.status != 200:
        raise ToolFailed(f"the page answered HTTP {response.status}")
    content_type = response.headers.get("Content-Type", "text/html").lower()
    if not content_type.startswith(("text/", "application/xhtml")):
        raise ToolFailed(f"the page is not text ({content_type.split(';')[0]})")
    title, text = page_text(response.text(), content_type)
    if len(text) > max_chars:
        text = text[:max_chars] + "\n[truncated]"
    return title, text
