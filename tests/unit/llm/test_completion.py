"""CompletionService against FakeOpenAI over loopback HTTP: trimming, observation, usage log."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from services.common.http import new_client_session
from services.llm.catalog import ProviderCatalog
from services.llm.completion import Attribution, CompletionService
from services.llm.metrics import LlmMetrics
from services.llm.providers import create_provider
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Message,
    Role,
    ServiceSettings,
    ServiceType,
    TextDelta,
)
from services.llm.usage_log import TokenUsageLog
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse


@dataclass
class StaticServices:
    """A ServiceSource holding fixed settings (the registry's role in production)."""

    services: dict[str, ServiceSettings] = field(default_factory=dict)

    async def service_settings(self, service_id: str) -> ServiceSettings:
        return self.services[service_id]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(ttft=0.02) as server:
        yield server


def _service(fake: FakeOpenAI, **overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        "id": "svc",
        "type": ServiceType.OPENAI_COMPATIBLE,
        "api_key": fake.api_key,
        "api_url": fake.base_url,
        "default_model": "gpt-4o",
        **overrides,
    }
    return ServiceSettings(**values)  # type: ignore[arg-type]


async def _run(service: ServiceSettings, request: CompletionRequest, **kw: object) -> tuple[list, LlmMetrics]:
    metrics = LlmMetrics()
    async with new_client_session() as http:
        catalog = ProviderCatalog(StaticServices({"svc": service}), lambda s: create_provider(s, http))
        completions = CompletionService(catalog, metrics, **kw)  # type: ignore[arg-type]
        events = [
            e
            async for e in completions.stream(
                "svc", request, Attribution(user_id="u1", agent_username="ai", team_id="t1")
            )
        ]
    return events, metrics


async def test_overhead_excludes_the_providers_time_to_first_token(fake: FakeOpenAI) -> None:
    fake.ttft = 0.3  # far longer than anything the run does besides waiting for it
    request = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))
    started = time.monotonic()
    events, metrics = await _run(_service(fake), request)
    elapsed = time.monotonic() - started
    assert isinstance(events[0], TextDelta) and isinstance(events[-1], Done)
    registry = metrics.registry
    labels = {"provider": "openaicompatible", "model": "gpt-4o", "outcome": "success"}
    assert registry.get_sample_value("agents_llm_requests_total", labels) == 1
    assert registry.get_sample_value("agents_llm_overhead_seconds_count", {"operation": "conversation"}) == 1
    overhead = registry.get_sample_value("agents_llm_overhead_seconds_sum", {"operation": "conversation"})
    # The whole stream took our overhead plus the provider's time, at least its TTFT: overhead
    # that counted the TTFT would exceed the rest, however slow the machine.
    assert overhead is not None and overhead <= elapsed - fake.ttft
    assert registry.get_sample_value("agents_llm_input_tokens_total", {"bot_name": "ai"}) == 11


async def test_old_history_is_trimmed_to_the_input_limit_keeping_system_and_newest_user(fake: FakeOpenAI) -> None:
    old = "lorem ipsum dolor sit amet " * 40
    request = CompletionRequest(
        messages=(
            Message.text(Role.SYSTEM, "You are helpful."),
            Message.text(Role.USER, old),
            Message.text(Role.ASSISTANT, old),
            Message.text(Role.USER, "What is new?"),
        )
    )
    await _run(_service(fake, input_token_limit=400), request)
    sent = fake.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1]["content"] in ("What is new?", [{"type": "text", "text": "What is new?"}])


async def test_usage_is_appended_to_the_log_when_enabled(fake: FakeOpenAI, tmp_path) -> None:
    fake.enqueue(FakeResponse.text(tokens=3, usage=(21, 9)))
    log = TokenUsageLog(str(tmp_path / "token_usage.log"))
    log.start()
    request = CompletionRequest(messages=(Message.text(Role.USER, "Hi"),))
    await _run(_service(fake), request, usage_log=log, usage_logging_enabled=lambda: True)
    log.close()
    record = json.loads((tmp_path / "token_usage.log").read_text().splitlines()[0])
    assert (record["user_id"], record["team_id"], record["bot_username"]) == ("u1", "t1", "ai")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (21, 9, 30)
