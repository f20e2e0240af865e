"""Ask Sage: the ``/server/query`` API, which answers in one JSON document (no streaming).

Wire format: ``POST {api_url}/query`` (default ``https://api.asksage.ai/server``) with the static
API key (or a 24-hour token) in ``x-access-tokens`` and a body of ``model``, ``system_prompt``,
``persona`` and ``message`` — the conversation as ``[{"user": "me"|"gpt", "message": ...}]``.
The answer is ``{"message": "...", "response": "OK", "status": 200, ...}``. Tools, images and
reasoning controls have no equivalent there and are left out; the whole answer becomes one
``TextDelta``. Ask Sage reports no token usage, so no ``Usage`` event is sent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    Message,
    ProviderError,
    Role,
    ServiceSettings,
    StopReason,
    TextDelta,
    TextPart,
    ToolCall,
    ToolResult,
)
from services.llm.providers.encoding import resolve_model
from services.llm.providers.errors import (
    MAX_ERROR_BODY_BYTES,
    provider_error_from_exception,
    provider_error_from_response,
)
from services.llm.providers.http_stream import read_bounded

logger = logging.getLogger(__name__)

PROVIDER_NAME = "Ask Sage"
DEFAULT_BASE_URL = "https://api.asksage.ai/server"
MAX_ANSWER_BYTES = 16 * 1024 * 1024


def build_query_body(request: CompletionRequest, settings: ServiceSettings, model: str) -> dict[str, Any]:
    """The ``/query`` body: system text apart, the rest as Ask Sage's ``me``/``gpt`` turns."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in request.messages:
        text = _plain_text(message)
        if message.role is Role.SYSTEM:
            if text:
                system.append(text)
            continue
        if not text:
            continue
        turns.append({"user": "gpt" if message.role is Role.ASSISTANT else "me", "message": text})
    body: dict[str, Any] = {"model": model, "message": turns, "persona": "default"}
    if system:
        body["system_prompt"] = "\n\n".join(system)
    return body


def _plain_text(message: Message) -> str:
    """Text of a message; earlier tool traffic is folded in as text so the model keeps the facts."""
    pieces: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, ToolCall):
            pieces.append(f"[called tool {part.name} with {part.raw_arguments}]")
        elif isinstance(part, ToolResult):
            pieces.append(f"[tool {part.name} returned: {part.content}]")
    return "\n".join(p for p in pieces if p)


class AskSageProvider:
    """A configured Ask Sage service; one upstream request per ``stream`` call."""

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._base = (settings.api_url or DEFAULT_BASE_URL).rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"x-access-tokens": self.settings.api_key, "content-type": "application/json"}

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(f"{self._base}{path}", json=body, headers=self._headers()) as resp:
                if resp.status >= 300:
                    raise provider_error_from_response(
                        resp.status,
                        resp.headers,
                        await read_bounded(resp, MAX_ERROR_BODY_BYTES),
                        PROVIDER_NAME,
                        secrets=(self.settings.api_key,),
                    )
                raw = await read_bounded(resp, MAX_ANSWER_BYTES + 1)
                if len(raw) > MAX_ANSWER_BYTES:
                    raise ProviderError(
                        f"{PROVIDER_NAME} sent an answer over {MAX_ANSWER_BYTES} bytes", code="answer_too_large"
                    )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.warning("request to %s failed: %s", PROVIDER_NAME, type(exc).__name__)
            raise provider_error_from_exception(exc, PROVIDER_NAME) from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ProviderError(f"{PROVIDER_NAME} sent a malformed answer", retryable=True, code="malformed_response")
        # Ask Sage reports some failures in a 200 body: {"status": 400, "response": "..."}.
        status = doc.get("status")
        if isinstance(status, int) and status >= 300:
            raise provider_error_from_response(
                status,
                {},
                json.dumps({"message": str(doc.get("response") or "")}).encode(),
                PROVIDER_NAME,
                secrets=(self.settings.api_key,),
            )
        return doc

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Event]:
        """The whole answer as one ``TextDelta`` (Ask Sage does not stream), then ``Done``."""
        model = resolve_model(request, self.settings)
        doc = await self._post("/query", build_query_body(request, self.settings, model))
        answer = doc.get("message")
        if not isinstance(answer, str):
            raise ProviderError(
                f"{PROVIDER_NAME} answered without a message", retryable=True, code="malformed_response"
            )
        if answer:
            yield TextDelta(answer)
        yield Done(StopReason.END_TURN)

    async def list_models(self) -> list[str]:
        """Model ids from ``POST /get-models`` (an OpenAI-style ``{"data": [{"id": ...}]}`` list)."""
        doc = await self._post("/get-models", {})
        listing = doc.get("data")
        if not isinstance(listing, list):
            response = doc.get("response")
            listing = response.get("data") if isinstance(response, dict) else response
        if not isinstance(listing, list):
            return []
        return sorted(str(m["id"]) for m in listing if isinstance(m, dict) and m.get("id"))

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> AskSageProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return AskSageProvider(settings, session)
