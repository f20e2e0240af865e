"""Google Gemini API (AI Studio): streaming, thinking, function tools, images, Search grounding.

Wire format: ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` answers server-sent
events whose data is a ``GenerateContentResponse`` (``candidates[0].content.parts[]``, the final
one with ``finishReason``, ``usageMetadata`` and ``groundingMetadata``); there is no ``[DONE]``.
Vertex AI takes the same body (``vertex.py``), so body building lives here and decoding in
``gemini_stream.py``.

Gemini 3 signs its reasoning with ``thoughtSignature`` on the part that follows it (the first
function call of a step, or a text part) and rejects a function-call history without it. The
signature streams out as a ``ReasoningDelta`` with empty text just before that part's event, and a
``ReasoningPart`` signature in history is put back on the next text or function-call part.
"""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

import aiohttp

from services.common.errors import ErrorClass
from services.llm.providers.base import (
    CompletionRequest,
    ImagePart,
    Message,
    ProviderError,
    ReasoningEffort,
    ReasoningPart,
    ServiceSettings,
    TextPart,
    ToolCall,
    ToolResult,
)
from services.llm.providers.encoding import alternating_turns, output_token_limit, resolve_model
from services.llm.providers.gemini_stream import LOCAL_CALL_ID_PREFIX, GenerateContentDecoder
from services.llm.providers.http_stream import get_json
from services.llm.providers.sse_provider import SSEProvider, SSERequest

PROVIDER_NAME = "Gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# Gemini 2.5 takes only a token budget: an effort level becomes an estimated budget within every
# 2.5 model's accepted range (Pro: 128-32768, Flash: 0-24576, Flash-Lite: 512-24576).
EFFORT_BUDGETS = {
    ReasoningEffort.MINIMAL: 512,
    ReasoningEffort.LOW: 2048,
    ReasoningEffort.MEDIUM: 8192,
    ReasoningEffort.HIGH: 24576,
}
_MODEL_VERSION = re.compile(r"gemini-(\d+)(?:\.(\d+))?")


def gemini_major_version(model: str) -> tuple[int, int]:
    """(major, minor) of a ``gemini-X.Y-...`` model id, (0, 0) when the id names no version."""
    match = _MODEL_VERSION.search(model)
    if not match:
        return (0, 0)
    return (int(match.group(1)), int(match.group(2) or 0))


def thinking_config(request: CompletionRequest, model: str) -> dict[str, Any] | None:
    """``generationConfig.thinkingConfig``: an explicit budget wins over an effort level.

    Effort maps to ``thinkingLevel`` on Gemini 3.0+ (Pro models only accept low/high, so minimal
    and medium round to their neighbour there) and to an estimated budget on older models.
    """
    options = request.reasoning
    if not options.enabled:
        return None
    if options.budget_tokens > 0:
        return {"thinkingBudget": options.budget_tokens, "includeThoughts": True}
    if gemini_major_version(model) >= (3, 0):
        level = options.effort.value
        if "pro" in model:
            level = "low" if options.effort in (ReasoningEffort.MINIMAL, ReasoningEffort.LOW) else "high"
        return {"thinkingLevel": level, "includeThoughts": True}
    return {"thinkingBudget": EFFORT_BUDGETS[options.effort], "includeThoughts": True}


def build_request_body(request: CompletionRequest, settings: ServiceSettings, model: str) -> dict[str, Any]:
    """The ``GenerateContentRequest`` body shared by the Gemini API and Vertex AI."""
    system, contents = to_gemini_contents(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    generation: dict[str, Any] = {"maxOutputTokens": output_token_limit(request, settings)}
    thinking = thinking_config(request, model)
    if thinking:
        generation["thinkingConfig"] = thinking
    if request.json_schema is not None:
        generation["responseMimeType"] = "application/json"
        generation["responseJsonSchema"] = request.json_schema
    body["generationConfig"] = generation
    tools: list[dict[str, Any]] = []
    if request.tools:
        # parametersJsonSchema takes full JSON Schema (MCP tools use keywords the older OpenAPI
        # subset in "parameters" rejects, e.g. additionalProperties).
        tools.append(
            {
                "functionDeclarations": [
                    {"name": t.name, "description": t.description, "parametersJsonSchema": t.input_schema}
                    for t in request.tools
                ]
            }
        )
    if request.native_web_search:
        tools.append({"googleSearch": {}})
    if tools:
        body["tools"] = tools
    return body


def to_gemini_contents(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """(system instruction, alternating contents) with tool results as user turns."""
    return alternating_turns(messages, _parts, assistant_role="model", content_key="parts")


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    signature = ""
    for part in message.parts:
        wire: dict[str, Any] | None = None
        if isinstance(part, ReasoningPart):
            # Thought summaries are not sent back; only the signature matters to the API.
            signature = part.signature or signature
        elif isinstance(part, TextPart) and part.text:
            wire = {"text": part.text}
        elif isinstance(part, ImagePart):
            wire = {"inlineData": {"mimeType": part.mime_type, "data": base64.b64encode(part.data).decode()}}
        elif isinstance(part, ToolCall):
            call: dict[str, Any] = {"name": part.name, "args": part.arguments or {}}
            if not part.id.startswith(LOCAL_CALL_ID_PREFIX):
                call["id"] = part.id
            wire = {"functionCall": call}
        elif isinstance(part, ToolResult):
            key = "error" if part.is_error else "content"
            result: dict[str, Any] = {"name": part.name, "response": {key: part.content}}
            if not part.tool_call_id.startswith(LOCAL_CALL_ID_PREFIX):
                result["id"] = part.tool_call_id
            wire = {"functionResponse": result}
        if wire is None:
            continue
        if signature and ("text" in wire or "functionCall" in wire):
            wire["thoughtSignature"] = signature
            signature = ""
        parts.append(wire)
    return parts


class GeminiProvider(SSEProvider):
    """A configured Gemini API service (API key auth); one upstream attempt per ``stream`` call."""

    provider_name = PROVIDER_NAME

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(settings, session)
        self._base = (settings.api_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1beta")

    def _headers(self) -> dict[str, str]:
        # The key goes in a header, never the ?key= query string, so it cannot leak via logged URLs.
        return {"x-goog-api-key": self.settings.api_key, "content-type": "application/json"}

    async def prepare(self, request: CompletionRequest) -> SSERequest:
        """One ``streamGenerateContent`` call; ``GenerateContentDecoder`` reads its events."""
        if not self.settings.api_key:
            raise ProviderError(
                "the Gemini service has no API key; an admin must add one",
                error_class=ErrorClass.POLICY,
                code="missing_api_key",
            )
        model = resolve_model(request, self.settings).removeprefix("models/")
        return SSERequest(
            f"{self._base}/v1beta/models/{model}:streamGenerateContent?alt=sse",
            self._headers(),
            build_request_body(request, self.settings, model),
            GenerateContentDecoder(PROVIDER_NAME),
            (self.settings.api_key,),
        )

    async def list_models(self) -> list[str]:
        """Ids of the models that support ``generateContent``, following page tokens."""
        models: list[str] = []
        token = ""
        while True:
            url = f"{self._base}/v1beta/models?pageSize=1000" + (f"&pageToken={quote(token)}" if token else "")
            page = await get_json(
                self._session,
                url,
                headers=self._headers(),
                provider_name=PROVIDER_NAME,
                secrets=(self.settings.api_key,),
            )
            for model in page.get("models") or []:
                if "generateContent" in (model.get("supportedGenerationMethods") or ["generateContent"]):
                    models.append(str(model.get("name") or "").removeprefix("models/"))
            token = str(page.get("nextPageToken") or "")
            if not token:
                return [m for m in models if m]


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> GeminiProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return GeminiProvider(settings, session)
