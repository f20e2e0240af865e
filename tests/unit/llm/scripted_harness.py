"""The conformance harness around the ``ScriptedServer`` fakes (Anthropic, Bedrock, Cohere).

Each provider's test module supplies how a conformance ``Scenario`` looks on its wire; the
harness builds providers through the real registry (``create_provider``) with a shared session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import aiohttp

from services.llm.providers import create_provider
from services.llm.providers.base import Provider, ServiceSettings
from tests.fakes.scripted import Reply, ScriptedServer
from tests.unit.llm.conformance import CHECKS, Check, Scenario, check_insufficient_quota_is_not_retried

# Anthropic, Bedrock and Cohere have no OpenAI-style ``insufficient_quota`` error on the wire
# (running out of credit is a plain 400/403 there), so that check has nothing to exercise.
CHECKS_WITHOUT_QUOTA: list[Check] = [c for c in CHECKS if c is not check_insufficient_quota_is_not_retried]


def split(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` consecutive parts (as a model streams JSON arguments)."""
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class ScriptedHarness:
    """A conformance ``Harness`` for one fake; ``secret_field`` names the setting that must never leak."""

    def __init__(
        self,
        fake: ScriptedServer,
        session: aiohttp.ClientSession,
        settings: ServiceSettings,
        to_reply: Callable[[Scenario], Reply],
        is_completion: Callable[[str], bool],
        secret_field: str = "api_key",
    ) -> None:
        self.fake = fake
        self.session = session
        self.settings = settings
        self._to_reply = to_reply
        self._is_completion = is_completion
        self._secret_field = secret_field
        self.api_key = str(getattr(settings, secret_field))

    def provider(self, **settings_overrides: Any) -> Provider:
        if "api_key" in settings_overrides and self._secret_field != "api_key":
            settings_overrides[self._secret_field] = settings_overrides.pop("api_key")
        return create_provider(dataclasses.replace(self.settings, **settings_overrides), self.session)

    def enqueue(self, scenario: Scenario) -> None:
        self.fake.enqueue(self._to_reply(scenario))

    @property
    def request_count(self) -> int:
        return sum(1 for r in self.fake.requests if self._is_completion(r.path))

    async def wait_for_disconnect(self, within: float) -> None:
        await self.fake.wait_for_disconnect(within)
