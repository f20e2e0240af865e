"""Google Vertex AI: Gemini models through a GCP project, with OAuth bearer tokens.

Same ``GenerateContentRequest`` body and SSE answer as the Gemini API (``gemini.py``); only the
endpoint (``https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/
publishers/google/models/{model}:streamGenerateContent?alt=sse``) and auth differ: a service
account JSON from the service settings, else Application Default Credentials (an ADC file the
wiring reads, else the metadata server of the GCE/GKE node).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from urllib.parse import quote

import aiohttp

from services.common.errors import InvalidInput
from services.llm.providers.base import CompletionRequest, Event, ProviderError, ServiceSettings
from services.llm.providers.encoding import resolve_model
from services.llm.providers.gemini import build_request_body
from services.llm.providers.gemini_stream import GenerateContentDecoder
from services.llm.providers.google_auth import (
    METADATA_TOKEN_URL,
    GoogleAccessTokens,
    parse_credentials,
)
from services.llm.providers.http_stream import get_json
from services.llm.providers.sse_provider import SSEProvider, SSERequest

PROVIDER_NAME = "Vertex AI"


def vertex_base_url(region: str) -> str:
    """The regional endpoint; the ``global`` location has no region prefix."""
    if region == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


class VertexProvider(SSEProvider):
    """A configured Vertex AI service; one upstream attempt per ``stream`` call.

    ``adc_credentials`` is the content of the ADC file (``GOOGLE_APPLICATION_CREDENTIALS``), used
    when the service has no service account JSON; with neither, the metadata server is asked.
    """

    provider_name = PROVIDER_NAME

    def __init__(
        self,
        settings: ServiceSettings,
        session: aiohttp.ClientSession,
        *,
        adc_credentials: str = "",
        metadata_url: str = METADATA_TOKEN_URL,
    ) -> None:
        if not settings.vertex_project_id or not settings.region:
            raise InvalidInput("a Vertex service needs a GCP project id and a region", field="vertexProjectID")
        super().__init__(settings, session)
        self._base = (settings.api_url or vertex_base_url(settings.region)).rstrip("/")
        credentials = parse_credentials(settings.vertex_auth_credentials or adc_credentials)
        self._tokens = GoogleAccessTokens(credentials, metadata_url=metadata_url)

    async def _headers(self) -> tuple[dict[str, str], str]:
        token = await self._tokens.token(self._session)
        return {"authorization": f"Bearer {token}", "content-type": "application/json"}, token

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """One ``streamGenerateContent`` call (Gemini's body and events) with a fresh-enough token."""
        model = resolve_model(request, self.settings).rsplit("/", 1)[-1]
        body = build_request_body(request, self.settings, model)
        project, region = quote(self.settings.vertex_project_id), quote(self.settings.region)
        url = (
            f"{self._base}/v1/projects/{project}/locations/{region}/publishers/google/models/"
            f"{quote(model)}:streamGenerateContent?alt=sse"
        )
        headers, token = await self._headers()
        return SSERequest(url, headers, body, GenerateContentDecoder(PROVIDER_NAME), (token,))

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Event, None]:
        """``SSEProvider.stream``, dropping the cached token when Vertex rejects it."""
        try:
            async with aclosing(super().stream(request)) as events:
                async for event in events:
                    yield event
        except ProviderError as exc:
            if exc.status == 401:
                # A token revoked before its expiry: the next attempt fetches a fresh one.
                self._tokens.invalidate()
            raise

    async def list_models(self) -> list[str]:
        """Google publisher model ids available in the region, following page tokens."""
        models: list[str] = []
        page_token = ""
        while True:
            headers, token = await self._headers()
            headers["x-goog-user-project"] = self.settings.vertex_project_id
            url = f"{self._base}/v1beta1/publishers/google/models?pageSize=1000" + (
                f"&pageToken={quote(page_token)}" if page_token else ""
            )
            page = await get_json(self._session, url, headers=headers, provider_name=PROVIDER_NAME, secrets=(token,))
            for model in page.get("publisherModels") or []:
                name = str(model.get("name") or "").rsplit("/", 1)[-1]
                if name:
                    models.append(name)
            page_token = str(page.get("nextPageToken") or "")
            if not page_token:
                return models


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> VertexProvider:
    """Factory for the registry: the service's SA JSON, else the metadata server's token."""
    return VertexProvider(settings, session)
