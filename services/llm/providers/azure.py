"""Azure OpenAI: chat completions on a deployment URL, or the v1 Responses API.

Wire notes: the ``model`` of a request is the *deployment* name; chat completions live at
``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` and ignore a body
``model``; the Responses API lives only on the OpenAI-compatible ``{endpoint}/openai/v1`` surface
with the deployment in the body. Both authenticate with an ``api-key`` header, not a bearer token.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from services.common.errors import InvalidInput
from services.llm.providers.base import CompletionRequest, Provider, ServiceSettings
from services.llm.providers.openai_chat import ChatCompletionsProvider
from services.llm.providers.openai_responses import ResponsesProvider

CHAT_API_VERSION = "2024-10-21"  # the current GA data-plane version with stream_options


def _endpoint(settings: ServiceSettings) -> str:
    """The resource endpoint (``https://NAME.openai.azure.com``) without any ``/openai`` suffix."""
    if not settings.api_url:
        raise InvalidInput("an Azure OpenAI service needs its endpoint URL", field="api_url")
    url = settings.api_url.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


def _azure_headers(settings: ServiceSettings) -> dict[str, str]:
    return {"api-key": settings.api_key} if settings.api_key else {}


class AzureChatProvider(ChatCompletionsProvider):
    """Chat completions against one deployment per request."""

    provider_name = "Azure OpenAI"
    max_tokens_field = "max_completion_tokens"  # o-series deployments reject max_tokens

    def base_url(self) -> str:
        """The endpoint's ``/openai`` root, under which each deployment has its path."""
        return f"{_endpoint(self.settings)}/openai"

    def completions_url(self, model: str) -> str:
        """The chat completions URL of deployment ``model``, with the API version Azure requires."""
        return f"{self.base_url()}/deployments/{quote(model, safe='')}/chat/completions?api-version={CHAT_API_VERSION}"

    def auth_headers(self) -> dict[str, str]:
        """Azure's ``api-key`` header."""
        return _azure_headers(self.settings)

    def build_body(self, request: CompletionRequest, model: str) -> dict[str, object]:
        """The chat completions body without ``model``."""
        body = super().build_body(request, model)
        body.pop("model", None)  # the deployment in the URL decides
        return body

    async def list_models(self) -> list[str]:
        """Deployments are listed by the management API, not the data plane: report the default."""
        return [self.settings.default_model] if self.settings.default_model else []


class AzureResponsesProvider(ResponsesProvider):
    """The Responses API on Azure's OpenAI-compatible v1 surface."""

    provider_name = "Azure OpenAI"

    def base_url(self) -> str:
        """The endpoint's OpenAI-compatible ``/openai/v1`` surface."""
        return f"{_endpoint(self.settings)}/openai/v1"

    def auth_headers(self) -> dict[str, str]:
        """Azure's ``api-key`` header."""
        return _azure_headers(self.settings)

    async def list_models(self) -> list[str]:
        """As for chat: the data plane does not list deployments."""
        return [self.settings.default_model] if self.settings.default_model else []


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> Provider:
    """Factory for the registry in ``services.llm.providers``."""
    if settings.use_responses_api:
        return AzureResponsesProvider(settings, session)
    return AzureChatProvider(settings, session)
