"""The embedding provider an admin configured, read from the plugin config's ``embeddingSearchConfig``.

The plugin's shape: ``embeddingProvider: {type, parameters}`` with ``type`` ``openai`` or
``openai-compatible`` (parameters ``apiKey``, ``apiURL``, ``embeddingModel``) or ``bifrost``
(parameters ``provider``, ``apiKey``, ``apiURL``, ``model``), and ``dimensions`` beside it (or in
``vectorStore.parameters``). ``azure`` and ``local`` (all-MiniLM-L6-v2 on the CPU, ``embeddingModel`` optionally a
directory with its files) are this cluster's own types; the pacing
limits (``tokensPerMinute`` and the rest) are optional extra parameters.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from services.common.errors import InvalidInput

OPENAI_API_URL = "https://api.openai.com/v1"
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
LOCAL_MODEL = "all-MiniLM-L6-v2"
AZURE_API_VERSION = "2024-10-21"
# OpenAI's documented caps for one embeddings request: 2048 inputs and 300,000 tokens in all.
DEFAULT_MAX_INPUTS = 2048
DEFAULT_MAX_REQUEST_TOKENS = 300_000
DEFAULT_MAX_CONCURRENCY = 8

_FIELD = "embeddingSearchConfig.embeddingProvider"


class ProviderKind(enum.StrEnum):
    """Which wire API the embeddings are asked of."""

    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai-compatible"
    AZURE = "azure"
    LOCAL = "local"


@dataclass(frozen=True)
class EmbeddingSettings:
    """One embedding model at one size, and how hard it may be driven.

    ``tokens_per_minute`` 0 means no budget; ``max_concurrency`` is the ceiling the adaptive
    concurrency may reach, not a fixed worker count.
    """

    kind: ProviderKind
    model: str
    dimensions: int
    api_url: str = ""
    api_key: str = ""
    api_version: str = AZURE_API_VERSION
    max_inputs: int = DEFAULT_MAX_INPUTS
    max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS
    tokens_per_minute: int = 0
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY

    @property
    def model_key(self) -> str:
        """What vectors are comparable by: a change of provider, model or dimensions needs a reindex."""
        return f"{self.kind.value}:{self.model}:{self.dimensions}"

    @classmethod
    def from_search_config(cls, search: Mapping[str, Any]) -> EmbeddingSettings:
        """Read ``embeddingSearchConfig``; ``InvalidInput`` names the first bad field."""
        provider = search.get("embeddingProvider")
        if not isinstance(provider, Mapping):
            raise InvalidInput("an embedding provider is required for semantic search", field=_FIELD)
        params = provider.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise InvalidInput("embedding provider parameters must be an object", field=f"{_FIELD}.parameters")
        kind, model = _kind_and_model(str(provider.get("type") or ""), params)
        settings = cls(
            kind=kind,
            model=model,
            dimensions=_dimensions(search),
            api_url=str(params.get("apiURL") or "").strip(),
            api_key=str(params.get("apiKey") or ""),
            api_version=str(params.get("apiVersion") or AZURE_API_VERSION),
            max_inputs=_positive(params, "maxInputsPerRequest", DEFAULT_MAX_INPUTS),
            max_request_tokens=_positive(params, "maxTokensPerRequest", DEFAULT_MAX_REQUEST_TOKENS),
            tokens_per_minute=_positive(params, "tokensPerMinute", 0),
            max_concurrency=_positive(params, "maxConcurrency", DEFAULT_MAX_CONCURRENCY),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings no request could succeed with."""
        if self.kind is ProviderKind.OPENAI and not self.api_key:
            raise InvalidInput("the OpenAI embedding provider needs an apiKey", field=f"{_FIELD}.parameters.apiKey")
        if self.kind in (ProviderKind.OPENAI_COMPATIBLE, ProviderKind.AZURE) and not self.api_url:
            raise InvalidInput(
                f"the {self.kind.value} embedding provider needs an apiURL", field=f"{_FIELD}.parameters.apiURL"
            )
        if self.kind is ProviderKind.AZURE and not self.api_key:
            raise InvalidInput("the Azure embedding provider needs an apiKey", field=f"{_FIELD}.parameters.apiKey")

    def endpoint(self) -> str:
        """The URL embeddings are posted to."""
        if self.kind is ProviderKind.AZURE:
            base = self.api_url.rstrip("/").removesuffix("/openai")
            deployment = quote(self.model, safe="")
            return f"{base}/openai/deployments/{deployment}/embeddings?api-version={quote(self.api_version)}"
        return f"{(self.api_url or OPENAI_API_URL).rstrip('/')}/embeddings"


def _kind_and_model(type_: str, params: Mapping[str, Any]) -> tuple[ProviderKind, str]:
    """The provider kind and model of a plugin ``type``; Bifrost's ``provider`` names the kind."""
    if type_ == "bifrost":
        type_ = str(params.get("provider") or "")
        model = params.get("model") or params.get("embeddingModel")
    else:
        model = params.get("embeddingModel") or params.get("model")
    try:
        kind = ProviderKind(type_)
    except ValueError:
        known = ", ".join(k.value for k in ProviderKind)
        raise InvalidInput(
            f"embedding provider {type_ or '(none)'!r} is not supported; use one of {known}", field=f"{_FIELD}.type"
        ) from None
    if not model and kind is ProviderKind.OPENAI:
        model = DEFAULT_OPENAI_MODEL
    if not model and kind is ProviderKind.LOCAL:
        model = LOCAL_MODEL
    if not model:
        raise InvalidInput(
            f"the {kind.value} embedding provider needs a model", field=f"{_FIELD}.parameters.embeddingModel"
        )
    return kind, str(model)


def _dimensions(search: Mapping[str, Any]) -> int:
    store = search.get("vectorStore") or {}
    store_params = store.get("parameters") or {} if isinstance(store, Mapping) else {}
    value = search.get("dimensions") or (store_params.get("dimensions") if isinstance(store_params, Mapping) else 0)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(
            "dimensions must be a whole number above 0 that matches the embedding model (e.g. 1536)",
            field="embeddingSearchConfig.dimensions",
        )
    return value


def _positive(params: Mapping[str, Any], key: str, default: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (value == 0 and default):
        raise InvalidInput(f"{key} must be a positive whole number", field=f"{_FIELD}.parameters.{key}")
    return value
