"""Provider instances per configured service, built once and dropped when the config changes.

A service's settings (secrets included) come from a ``ServiceSource`` — the registry over gRPC
in production — the first time a call names it. The provider built from them is cached by
service id; concurrent first calls share one lookup. ``invalidate()`` (called on every plugin
config change) drops the cache: calls in flight keep the provider they hold, new calls build a
fresh one from the new settings.

Dropped providers may own resources (a Bedrock provider built without the shared session opens
its own, Vertex caches tokens): each is closed once ``close_grace`` seconds have passed, longer
than any stream may run on it (the turn timeout), so a stream in flight is never cut, and at the
latest when the catalog closes at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from services.common.errors import InvalidInput
from services.llm.providers.base import Provider, ServiceSettings

logger = logging.getLogger(__name__)


class ServiceSource(Protocol):
    """Where service settings come from."""

    async def service_settings(self, service_id: str) -> ServiceSettings:
        """The service's settings with secrets; raises ``NotFound`` for an unknown id."""
        ...


ProviderBuilder = Callable[[ServiceSettings], Provider]


class ProviderCatalog:
    """Cached providers by service id, plus uncached ones for inline credentials."""

    def __init__(self, source: ServiceSource, build: ProviderBuilder, *, close_grace: float = 900.0) -> None:
        self._source = source
        self._build = build
        self._close_grace = close_grace
        self._providers: dict[str, Provider] = {}
        self._pending: dict[str, asyncio.Future[Provider]] = {}
        self._generation = 0
        # Dropped providers not closed yet, and the timers that will close them.
        self._retired: set[Provider] = set()
        self._closers: set[asyncio.Task[None]] = set()

    async def get(self, service_id: str) -> Provider:
        """The provider of a saved service (NOT_FOUND via the source for an unknown id)."""
        if not service_id:
            raise InvalidInput("service_id is required", field="service_id")
        provider = self._providers.get(service_id)
        if provider is not None:
            return provider
        pending = self._pending.get(service_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Provider] = asyncio.get_running_loop().create_future()
        self._pending[service_id] = future
        generation = self._generation
        try:
            settings = await self._source.service_settings(service_id)
            provider = self._build(settings)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._pending.pop(service_id, None)
        # A config change during the lookup may have made these settings stale: serve this call
        # with them, but do not cache them.
        if generation == self._generation:
            self._providers[service_id] = provider
        future.set_result(provider)
        return provider

    def for_settings(self, settings: ServiceSettings) -> Provider:
        """An uncached provider for unsaved credentials (release it with ``aclose``)."""
        return self._build(settings)

    def invalidate(self) -> None:
        """Forget every cached provider; the next call re-reads its service's settings."""
        self._generation += 1
        dropped = list(self._providers.values())
        self._providers.clear()
        if not dropped:
            return
        logger.info("plugin config changed: dropped %d cached providers", len(dropped))
        self._retired.update(dropped)
        try:
            task = asyncio.get_running_loop().create_task(self._close_later(dropped))
        except RuntimeError:
            return  # no loop (a synchronous caller): closed by ``aclose``
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    async def _close_later(self, providers: list[Provider]) -> None:
        await asyncio.sleep(self._close_grace)
        for provider in providers:
            await self._close(provider)

    async def _close(self, provider: Provider) -> None:
        if provider not in self._retired:
            return
        self._retired.discard(provider)
        try:
            await provider.aclose()
        except Exception:
            logger.warning("closing a dropped %s provider failed", provider.settings.type, exc_info=True)

    async def aclose(self) -> None:
        """Close every provider, cached or dropped (at shutdown, after the streams ended)."""
        for task in list(self._closers):
            task.cancel()
        self._retired.update(self._providers.values())
        self._providers.clear()
        for provider in list(self._retired):
            await self._close(provider)

    @property
    def retired(self) -> int:
        """Providers dropped by a config change and not closed yet."""
        return len(self._retired)

    @property
    def cached_ids(self) -> frozenset[str]:
        """The ids of the services whose providers are built and cached."""
        return frozenset(self._providers)
