"""Provider registry: one factory per service type.

Adding a provider is one line in ``_FACTORIES``: ``ServiceType.X: module.create`` where ``create``
takes ``(settings, session)`` and returns a ``Provider``. Modules are imported lazily so a
service that never uses, say, Bedrock never imports botocore.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import aiohttp

from services.common.errors import InvalidInput
from services.llm.providers.base import Provider, ServiceSettings, ServiceType

ProviderFactory = Callable[[ServiceSettings, aiohttp.ClientSession], Provider]


def _lazy(module: str, factory: str = "create") -> ProviderFactory:
    def build(settings: ServiceSettings, session: aiohttp.ClientSession) -> Provider:
        create: ProviderFactory = getattr(importlib.import_module(f"services.llm.providers.{module}"), factory)
        return create(settings, session)

    return build


_FACTORIES: dict[ServiceType, ProviderFactory] = {
    ServiceType.OPENAI: _lazy("openai_responses"),
    ServiceType.OPENAI_COMPATIBLE: _lazy("openai_compatible"),
    ServiceType.AZURE: _lazy("azure"),
    ServiceType.MISTRAL: _lazy("mistral"),
    ServiceType.GEMINI: _lazy("gemini"),
    ServiceType.VERTEX: _lazy("vertex"),
    ServiceType.SCALE: _lazy("scale"),
    ServiceType.ASAGE: _lazy("asage"),
    ServiceType.ANTHROPIC: _lazy("anthropic"),
    ServiceType.BEDROCK: _lazy("bedrock"),
    ServiceType.COHERE: _lazy("cohere"),
}


def create_provider(settings: ServiceSettings, session: aiohttp.ClientSession) -> Provider:
    """The provider for a configured service, sharing the caller's HTTP session.

    Raises ``InvalidInput`` for a service type no provider is registered for.
    """
    try:
        factory = _FACTORIES.get(ServiceType(settings.type))
    except ValueError:
        factory = None
    if factory is None:
        raise InvalidInput(f"service type {settings.type} is not supported", field="type")
    return factory(settings, session)
