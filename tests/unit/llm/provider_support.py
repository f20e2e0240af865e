"""One way to put a provider under test: the ``upstream`` fixture (``conftest.py``).

A provider test module names its wire with a module-level ``UPSTREAM`` (one of the ``Wire``s
below); the fixture starts that wire's fake on a free loopback port, opens a client session and
yields an ``Upstream``: the running fake, the session, the service settings that point at the
fake, and ``provider(**overrides)``, which builds the provider through the real registry. An
``Upstream`` is also the conformance suite's ``Harness`` (``conformance.py``) for the wires that
script its scenarios.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from services.llm.providers import create_provider
from services.llm.providers.base import (
    CompletionRequest,
    Event,
    Message,
    Provider,
    Role,
    ServiceSettings,
    ServiceType,
    TextPart,
)
from services.llm.streaming import stream_completion
from tests.fakes import anthropic as anthropic_api
from tests.fakes import asage as asage_api
from tests.fakes import bedrock as bedrock_api
from tests.fakes import cohere as cohere_api
from tests.fakes import gemini as gemini_api
from tests.fakes import scale as scale_api
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.unit.llm.conformance import CHECKS, Check, Scenario, check_insufficient_quota_is_not_retried

HELLO = (Message(Role.SYSTEM, (TextPart("Be brief."),)), Message.text(Role.USER, "Hi"))

# Anthropic, Bedrock and Cohere have no OpenAI-style ``insufficient_quota`` error on the wire
# (running out of credit is a plain 400/403 there), so that check has nothing to exercise.
CHECKS_WITHOUT_QUOTA: list[Check] = [c for c in CHECKS if c is not check_insufficient_quota_is_not_retried]


class Fake(Protocol):
    """What every provider fake offers (``FakeOpenAI`` and the ``ScriptedServer`` fakes)."""

    requests: list[Any]

    async def start(self) -> Any: ...

    async def close(self) -> None: ...

    def enqueue(self, *replies: Any) -> None: ...

    async def wait_for_disconnect(self, within: float = 5.0) -> None: ...


@dataclass(frozen=True)
class Wire:
    """How one provider's tests reach its fake.

    ``reply`` turns a conformance ``Scenario`` into the fake's script (``None``: the wire has no
    conformance suite); ``secret_field`` names the setting that must never leak.
    """

    fake: Callable[[], Fake]
    settings: Callable[[Any], ServiceSettings]
    is_completion: Callable[[str], bool] = lambda path: True
    reply: Callable[[Scenario], Any] | None = None
    secret_field: str = "api_key"


class Upstream:
    """A wire's running fake, a client session, and the settings pointing at the fake."""

    def __init__(self, wire: Wire, fake: Any, session: aiohttp.ClientSession, settings: ServiceSettings) -> None:
        self.wire = wire
        self.fake = fake
        self.session = session
        self.settings = settings
        self.secret_field = wire.secret_field
        self.secret = str(getattr(settings, wire.secret_field))

    def provider(self, **settings_overrides: Any) -> Provider:
        """The provider under test, built by the registry (overrides go into ``ServiceSettings``)."""
        return create_provider(dataclasses.replace(self.settings, **settings_overrides), self.session)

    def with_settings(self, **settings_overrides: Any) -> Upstream:
        """The same fake and session with other settings."""
        settings = dataclasses.replace(self.settings, **settings_overrides)
        return Upstream(self.wire, self.fake, self.session, settings)

    def enqueue(self, scenario: Scenario) -> None:
        assert self.wire.reply is not None, "this wire scripts no conformance scenarios"
        self.fake.enqueue(self.wire.reply(scenario))

    @property
    def request_count(self) -> int:
        return sum(1 for r in self.fake.requests if self.wire.is_completion(r.path))

    async def wait_for_disconnect(self, within: float) -> None:
        await self.fake.wait_for_disconnect(within)


async def drain(events: AsyncIterator[Event]) -> list[Event]:
    return [e async for e in events]


def engine(provider: Provider, request: CompletionRequest, stall: float = 5.0) -> AsyncIterator[Event]:
    """``request`` through the streaming engine, with fast retries."""
    return stream_completion(provider, request, max_attempts=3, base_backoff=0.01, stall_timeout=stall)


def split(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` consecutive parts (as a model streams JSON arguments)."""
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---- conformance scenarios on each wire ---------------------------------------------------------


def _openai_reply(scenario: Scenario) -> FakeResponse:
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


def _scripted_reply(
    api: Any, tool_id: str, rate_limited: Callable[[str], Any], long_line: Callable[[], Any]
) -> Callable[[Scenario], Any]:
    """The scenarios on a ``ScriptedServer`` fake whose module ``api`` has the usual builders
    (``text``, ``tool_call``, ``error_mid_stream``, ``stall``); ``rate_limited`` (given the
    Retry-After) and ``long_line`` are the wire's own."""

    def reply(scenario: Scenario) -> Any:
        tokens = list(scenario.tokens)
        if scenario.kind == "text":
            return api.text(tokens)
        if scenario.kind == "tool_call":
            return api.tool_call(tool_id, scenario.tool_name, split(scenario.arguments, 4))
        if scenario.kind == "rate_limited":
            return rate_limited(scenario.retry_after)
        if scenario.kind == "error_after":
            return api.error_mid_stream(tokens[: scenario.k])
        if scenario.kind == "stall_after":
            return api.stall(tokens[: scenario.k])
        if scenario.kind == "long_line":
            return long_line()
        raise ValueError(f"no {api.__name__} wire form for {scenario.kind}")

    return reply


# ---- the wires ----------------------------------------------------------------------------------

_OPENAI_COMPLETION_PATHS = ("/v1/chat/completions", "/v1/responses", "/openai/v1/responses")


def _openai_completion(path: str) -> bool:
    return path in _OPENAI_COMPLETION_PATHS or path.endswith("/chat/completions")


def _openai_wire(service_type: ServiceType, default_model: str, url: Callable[[FakeOpenAI], str], **fake: Any) -> Wire:
    return Wire(
        fake=lambda: FakeOpenAI(**fake),
        settings=lambda f: ServiceSettings(
            id=f"{service_type}-test",
            type=service_type,
            api_key=f.api_key,
            api_url=url(f),
            default_model=default_model,
        ),
        is_completion=_openai_completion,
        reply=_openai_reply,
    )


def _vertex_settings(fake: gemini_api.FakeGoogle) -> ServiceSettings:
    # A fresh service account whose key the fake's token endpoint trusts.
    credentials, key = gemini_api.service_account_json(f"{fake.url}/token")
    fake.public_key = key.public_key()
    return ServiceSettings(
        id="v",
        type=ServiceType.VERTEX,
        api_url=fake.url,
        region="us-central1",
        vertex_project_id="fake-project",
        vertex_auth_credentials=credentials,
        default_model="gemini-3-pro-preview",
    )


OPENAI = _openai_wire(ServiceType.OPENAI, "gpt-5", lambda f: f.base_url)
OPENAI_COMPATIBLE = _openai_wire(ServiceType.OPENAI_COMPATIBLE, "gpt-4o", lambda f: f.base_url)
# Azure's endpoint setting is the resource root, written as admins paste it.
AZURE = _openai_wire(ServiceType.AZURE, "my-deployment", lambda f: f.url + "/", api_key="azure-key-0123456789abcdef")
MISTRAL = _openai_wire(
    ServiceType.MISTRAL,
    "mistral-large-latest",
    lambda f: f.base_url,
    api_key="mistral-key-0123456789abcdef",
    flavor="mistral",
)
ANTHROPIC = Wire(
    fake=anthropic_api.FakeAnthropic,
    settings=lambda f: ServiceSettings(
        id="anthropic-test",
        type=ServiceType.ANTHROPIC,
        api_key=anthropic_api.API_KEY,
        api_url=f.url,
        default_model="claude-sonnet-4-5",
    ),
    is_completion=lambda path: path == "/v1/messages",
    reply=_scripted_reply(
        anthropic_api,
        "toolu_conf",
        lambda after: anthropic_api.http_error(429, "rate_limit_error", "rate limited", retry_after=after),
        anthropic_api.long_line,
    ),
)
BEDROCK = Wire(
    fake=bedrock_api.FakeBedrock,
    settings=lambda f: ServiceSettings(
        id="bedrock-test",
        type=ServiceType.BEDROCK,
        api_url=f.url,
        region=bedrock_api.REGION,
        default_model=bedrock_api.MODEL_ID,
        aws_access_key_id=bedrock_api.ACCESS_KEY_ID,
        aws_secret_access_key=bedrock_api.SECRET_ACCESS_KEY,
    ),
    is_completion=lambda path: path.endswith("/converse-stream"),
    reply=_scripted_reply(
        bedrock_api,
        "tooluse_conf",
        lambda after: bedrock_api.http_error(429, "ThrottlingException", "Too many requests", retry_after=after),
        bedrock_api.oversized_frame,
    ),
    # The AWS secret is what must never leak; the suite's "wrong key" becomes a wrong secret.
    secret_field="aws_secret_access_key",
)
COHERE = Wire(
    fake=cohere_api.FakeCohere,
    settings=lambda f: ServiceSettings(
        id="cohere-test",
        type=ServiceType.COHERE,
        api_key=cohere_api.API_KEY,
        api_url=f.url,
        default_model="command-a-03-2025",
    ),
    is_completion=lambda path: path == "/v2/chat",
    reply=_scripted_reply(
        cohere_api,
        "call_conf",
        lambda after: cohere_api.http_error(429, "too many requests", retry_after=after),
        cohere_api.long_line,
    ),
)
GEMINI = Wire(
    fake=gemini_api.FakeGoogle,
    settings=lambda f: ServiceSettings(
        id="g", type=ServiceType.GEMINI, api_key=gemini_api.API_KEY, api_url=f.url, default_model="gemini-2.5-flash"
    ),
)
VERTEX = Wire(fake=gemini_api.FakeGoogle, settings=_vertex_settings)
SCALE = Wire(
    fake=scale_api.FakeScale,
    settings=lambda f: ServiceSettings(
        id="s",
        type=ServiceType.SCALE,
        api_key=scale_api.API_KEY,
        api_url=f"{f.url}/v5",
        account_id=scale_api.ACCOUNT_ID,
        default_model="openai/gpt-4o",
    ),
)
ASAGE = Wire(
    fake=asage_api.FakeAskSage,
    settings=lambda f: ServiceSettings(
        id="a", type=ServiceType.ASAGE, api_key=asage_api.API_KEY, api_url=f"{f.url}/server", default_model="gpt-4o"
    ),
)
