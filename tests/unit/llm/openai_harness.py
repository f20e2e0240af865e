"""The conformance harness around ``FakeOpenAI``, shared by the OpenAI, compatible, Azure and
Mistral provider tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import aiohttp

from services.llm.providers import create_provider
from services.llm.providers.base import Provider, ServiceSettings
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.unit.llm.conformance import Scenario

COMPLETION_PATHS = ("/v1/chat/completions", "/v1/responses", "/openai/v1/responses")


def to_fake_response(scenario: Scenario) -> FakeResponse:
    """A conformance ``Scenario`` as the fake's script."""
    tokens = scenario.tokens
    if scenario.kind == "text":
        return FakeResponse(tokens=tokens)
    if scenario.kind == "tool_call":
        return FakeResponse.tool_call(scenario.tool_name, scenario.arguments, chunks=4)
    if scenario.kind == "rate_limited":
        return FakeResponse.rate_limited(scenario.retry_after)
    if scenario.kind == "insufficient_quota":
        return FakeResponse.insufficient_quota()
    if scenario.kind == "error_after":
        return FakeResponse(tokens=tokens, trouble="error", after_tokens=scenario.k)
    if scenario.kind == "stall_after":
        return FakeResponse(tokens=tokens, trouble="stall", after_tokens=scenario.k)
    if scenario.kind == "long_line":
        return FakeResponse(tokens=tokens, trouble="long_line", after_tokens=0)
    raise ValueError(f"unknown scenario {scenario.kind}")


class OpenAIHarness:
    """Builds providers through the real factory against a running ``FakeOpenAI``."""

    def __init__(
        self,
        fake: FakeOpenAI,
        session: aiohttp.ClientSession,
        settings: ServiceSettings,
    ) -> None:
        self.fake = fake
        self.session = session
        self.settings = settings
        self.api_key = settings.api_key

    def provider(self, **settings_overrides: Any) -> Provider:
        return create_provider(dataclasses.replace(self.settings, **settings_overrides), self.session)

    def enqueue(self, scenario: Scenario) -> None:
        self.fake.enqueue(to_fake_response(scenario))

    @property
    def request_count(self) -> int:
        return sum(1 for r in self.fake.requests if r.path in COMPLETION_PATHS or r.path.endswith("/chat/completions"))

    async def wait_for_disconnect(self, within: float) -> None:
        await self.fake.wait_for_disconnect(within)


HarnessFactory = Callable[[FakeOpenAI, aiohttp.ClientSession], OpenAIHarness]
