"""Reading a search API's answer: status and JSON, with errors fit for the model (no secrets)."""

from __future__ import annotations

from typing import Any

from services.common.http_guard import GuardedResponse
from services.tools.results import ToolFailed


def checked_json(response: GuardedResponse, provider: str) -> Any:
    """The JSON body of a 200 answer; ToolFailed naming the provider and status otherwise."""
    if response.status in (401, 403):
        raise ToolFailed(f"{provider} search refused the API key (HTTP {response.status}); ask an admin to check it")
    if response.status == 429:
        raise ToolFailed(f"{provider} search rate limit reached (HTTP 429); try again later")
    if response.status != 200:
        raise ToolFailed(f"{provider} search failed (HTTP {response.status})")
    try:
        return response.json()
    except ValueError:
        raise ToolFailed(f"{provider} search answered with invalid JSON") from None
