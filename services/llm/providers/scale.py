"""Scale AI (Scale GenAI Platform, including ScaleGov): OpenAI-compatible chat completions.

Scale serves ``POST {api_url}/chat/completions`` (e.g. ``https://sgp-api.scalegov.com/v5``) with
the OpenAI streaming wire format and ``vendor/model`` ids (``openai/gpt-4o``), but authenticates
with ``x-api-key`` instead of ``Authorization``, and picks the billed account from
``x-selected-account-id`` (required on ScaleGov, where a key can reach several accounts). Only
the headers differ, so decoding is the shared chat-completions code.
"""

from __future__ import annotations

import aiohttp

from services.common.errors import InvalidInput
from services.llm.providers.base import ServiceSettings
from services.llm.providers.openai_chat import ChatCompletionsProvider


class ScaleProvider(ChatCompletionsProvider):
    """Chat completions on Scale's API with Scale's auth headers."""

    provider_name = "Scale AI"
    default_base_url = ""  # no public default: the API URL names the Scale deployment

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        if not settings.api_url:
            raise InvalidInput("a Scale AI service needs its API URL", field="apiURL")
        super().__init__(settings, session)

    def auth_headers(self) -> dict[str, str]:
        """Scale's ``x-api-key``, and the account to bill when one is configured."""
        # No Authorization header at all: Scale's gateway rejects a bearer it cannot parse.
        headers = {"x-api-key": self.settings.api_key}
        account = self.settings.account_id or self.settings.org_id  # the plugin stored it in orgId
        if account:
            headers["x-selected-account-id"] = account
        return headers


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> ScaleProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return ScaleProvider(settings, session)
