"""What OpenAI's two streaming APIs (Chat Completions, Responses) share on the wire: the ``/v1``
base URL, a bearer key with an optional organization, and the ``GET {base}/models`` listing.
Azure, Mistral and Scale override the parts they do differently."""

from __future__ import annotations

from services.llm.providers.http_stream import get_json
from services.llm.providers.sse_provider import SSEProvider


class OpenAIAPIProvider(SSEProvider):
    """The base of ``ChatCompletionsProvider`` and ``ResponsesProvider``."""

    default_base_url = "https://api.openai.com/v1"

    def base_url(self) -> str:
        """The API root every path is under: the service's API URL, else the provider's default."""
        return (self.settings.api_url or self.default_base_url).rstrip("/")

    def auth_headers(self) -> dict[str, str]:
        """The bearer key, and the organization when one is configured."""
        headers: dict[str, str] = {}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        if self.settings.org_id:
            headers["OpenAI-Organization"] = self.settings.org_id
        return headers

    async def list_models(self) -> list[str]:
        """Model ids from ``GET {base}/models``."""
        doc = await get_json(
            self._session,
            f"{self.base_url()}/models",
            headers=self.auth_headers(),
            provider_name=self.provider_name,
            secrets=(self.settings.api_key,),
        )
        return sorted(str(m["id"]) for m in doc.get("data", []) if isinstance(m, dict) and "id" in m)
