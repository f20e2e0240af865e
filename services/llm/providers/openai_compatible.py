"""``openaicompatible`` services: chat completions by default, the Responses API when asked.

Kept apart from both protocol modules so the choice is made in one place.
"""

from __future__ import annotations

import aiohttp

from services.llm.providers.base import Provider, ServiceSettings
from services.llm.providers.openai_chat import ChatCompletionsProvider
from services.llm.providers.openai_responses import ResponsesProvider

PROVIDER_NAME = "the OpenAI-compatible service"


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> Provider:
    """Factory for the registry in ``services.llm.providers``."""
    if settings.use_responses_api:
        return ResponsesProvider(settings, session, provider_name=PROVIDER_NAME)
    return ChatCompletionsProvider(settings, session, provider_name=PROVIDER_NAME)
