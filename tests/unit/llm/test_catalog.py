"""Providers dropped on a plugin config change are closed, but never under a stream in flight."""

from __future__ import annotations

import asyncio
import gc
import warnings
from dataclasses import dataclass

from services.llm.catalog import ProviderCatalog
from services.llm.providers.base import CompletionRequest, Done, Message, Role, ServiceSettings, ServiceType
from services.llm.providers.bedrock import BedrockProvider
from tests.fakes import bedrock as fake_api
from tests.fakes.bedrock import ACCESS_KEY_ID, MODEL_ID, REGION, SECRET_ACCESS_KEY, FakeBedrock
from tests.polling import poll
from tests.unit.llm.provider_support import BEDROCK, Upstream

HELLO = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))


@dataclass
class BedrockSource:
    url: str

    async def service_settings(self, service_id: str) -> ServiceSettings:
        return ServiceSettings(
            id=service_id,
            type=ServiceType.BEDROCK,
            api_url=self.url,
            region=REGION,
            default_model=MODEL_ID,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )


UPSTREAM = BEDROCK


def catalog_for(upstream: Upstream, grace: float) -> ProviderCatalog:
    return ProviderCatalog(
        BedrockSource(upstream.fake.url),
        lambda settings: BedrockProvider(settings, upstream.session),
        close_grace=grace,
    )


def unclosed_resources() -> list[str]:
    """What aiohttp reports about sessions and connectors collected while still open (through
    ResourceWarning and the loop's exception handler)."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    return reported + [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_a_dropped_provider_is_closed_and_leaves_no_unclosed_session(
    upstream: Upstream, fake: FakeBedrock
) -> None:
    catalog = catalog_for(upstream, grace=0.0)
    fake.enqueue(fake_api.text(["Hello"]))
    events = [e async for e in (await catalog.get("svc")).stream(HELLO)]
    assert isinstance(events[-1], Done)
    catalog.invalidate()
    await poll(lambda: catalog.retired == 0, within=5.0, interval=0.01)
    assert catalog.cached_ids == frozenset()
    assert unclosed_resources() == []


async def test_a_stream_in_flight_finishes_on_its_dropped_provider_which_closes_at_shutdown(
    upstream: Upstream, fake: FakeBedrock
) -> None:
    catalog = catalog_for(upstream, grace=3600.0)
    fake.enqueue(fake_api.text(["one ", "two ", "three"]))
    stream = (await catalog.get("svc")).stream(HELLO)
    first = await anext(stream)
    catalog.invalidate()
    rest = [e async for e in stream]
    assert first is not None and isinstance(rest[-1], Done) and catalog.retired == 1
    del stream
    await catalog.aclose()
    assert catalog.retired == 0
    assert unclosed_resources() == []
