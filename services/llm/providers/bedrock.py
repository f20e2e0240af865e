"""AWS Bedrock ConverseStream: one dialect for every Bedrock model, signed with SigV4.

``POST /model/{modelId}/converse-stream`` answers in the binary AWS event-stream framing (each
frame: prelude, headers, payload, CRCs), decoded with botocore. Each frame's ``:event-type`` header
names the event (``messageStart``, ``contentBlockStart/Delta/Stop``, ``messageStop``, ``metadata``)
and its payload is that event's JSON; ``:message-type: exception`` frames carry a failure.
Credentials: the service's access keys, else a Bedrock API key (bearer), else botocore's default
chain (environment, shared config, container or instance role).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.eventstream import EventStreamBuffer, InvalidHeadersLength, InvalidPayloadLength, ParserError
from yarl import URL

from services.common.errors import ErrorClass, InvalidInput
from services.common.upstream_replies import redact_secrets
from services.llm.providers.anthropic import thinking_budget
from services.llm.providers.base import (
    CompletionRequest,
    Done,
    Event,
    ImagePart,
    Message,
    ProviderError,
    ReasoningDelta,
    ReasoningPart,
    ServiceSettings,
    StopReason,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallEvent,
    ToolResult,
    Usage,
)
from services.llm.providers.encoding import alternating_turns, output_token_limit, resolve_model, tool_call_from_raw
from services.llm.providers.errors import (
    MAX_ERROR_BODY_BYTES,
    provider_error_from_exception,
    provider_error_from_response,
    truncated_stream,
)
from services.llm.providers.http_stream import read_bounded

logger = logging.getLogger(__name__)

PROVIDER_NAME = "Bedrock"
SIGNING_SERVICE = "bedrock"

_STOP_REASONS = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.END_TURN,
    "tool_use": StopReason.TOOL_USE,
    "max_tokens": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "guardrail_intervened": StopReason.CONTENT_FILTER,
    "content_filtered": StopReason.CONTENT_FILTER,
}
# Exception frames a retry can cure (before the first token, as the engine decides).
_RETRYABLE_EXCEPTIONS = {
    "throttlingException",
    "internalServerException",
    "serviceUnavailableException",
    "modelStreamErrorException",
}


def build_request_body(request: CompletionRequest, settings: ServiceSettings) -> dict[str, Any]:
    """The ConverseStream body for ``request`` (the model id rides in the URL, not here)."""
    system, messages = to_converse_messages(request.messages)
    max_tokens = output_token_limit(request, settings)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = [{"text": system}]
    model = resolve_model(request, settings)
    # Only Anthropic models on Bedrock take a thinking budget; others reason (or not) on their own.
    if request.reasoning.enabled and ("anthropic" in model or "claude" in model):
        budget, max_tokens = thinking_budget(request, max_tokens)
        body["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
    body["inferenceConfig"] = {"maxTokens": max_tokens}
    if request.tools:
        body["toolConfig"] = {
            "tools": [
                {
                    "toolSpec": {
                        "name": t.name,
                        "description": t.description,
                        "inputSchema": {"json": t.input_schema},
                    }
                }
                for t in request.tools
            ]
        }
    return body


def to_converse_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, alternating messages) with tool results as user turns."""
    return alternating_turns(messages, _blocks)


def _blocks(message: Message) -> list[dict[str, Any]]:
    return [b for b in map(_block, message.parts) if b is not None]


def _block(part: object) -> dict[str, Any] | None:
    if isinstance(part, TextPart):
        return {"text": part.text} if part.text else None  # empty text blocks are refused
    if isinstance(part, ImagePart):
        fmt = part.mime_type.rpartition("/")[2].lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        return {"image": {"format": fmt, "source": {"bytes": base64.b64encode(part.data).decode("ascii")}}}
    if isinstance(part, ReasoningPart):
        if part.redacted:
            return {"reasoningContent": {"redactedContent": part.text}}
        if not part.signature:
            return None  # unsigned reasoning would be refused by Claude and is useless to others
        return {"reasoningContent": {"reasoningText": {"text": part.text, "signature": part.signature}}}
    if isinstance(part, ToolCall):
        args = part.arguments if part.arguments is not None else {}
        return {"toolUse": {"toolUseId": part.id, "name": part.name, "input": args}}
    if isinstance(part, ToolResult):
        return {
            "toolResult": {
                "toolUseId": part.tool_call_id,
                "content": [{"text": part.content or " "}],
                "status": "error" if part.is_error else "success",
            }
        }
    return None


class ConverseStreamDecoder:
    """Turns decoded event-stream frames into normalised events."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._tools: dict[int, tuple[str, str, list[str]]] = {}
        self._usage: Usage | None = None
        self._stop: StopReason | None = None
        self._secrets = secrets

    def feed(self, headers: dict[str, Any], payload: bytes) -> list[Event]:
        """Events for one frame; raises ``ProviderError`` for exception and error frames."""
        message_type = headers.get(":message-type", "event")
        if message_type == "exception":
            raise self._exception(str(headers.get(":exception-type", "")), payload)
        if message_type == "error":
            raise ProviderError(
                f"{PROVIDER_NAME} failed while answering: {headers.get(':error-message', '')}",
                retryable=True,
                code=str(headers.get(":error-code", "stream_error")),
            )
        kind = headers.get(":event-type", "")
        data = _json_object(payload)
        index = int(data.get("contentBlockIndex", 0))
        if kind == "contentBlockStart":
            tool = (data.get("start") or {}).get("toolUse")
            if tool:
                self._tools[index] = (str(tool.get("toolUseId", "")), str(tool.get("name", "")), [])
        elif kind == "contentBlockDelta":
            return self._delta(index, data.get("delta") or {})
        elif kind == "contentBlockStop" and index in self._tools:
            tool_id, name, parts = self._tools.pop(index)
            return [ToolCallEvent(tool_call_from_raw(tool_id, name, "".join(parts)))]
        elif kind == "messageStop":
            self._stop = _STOP_REASONS.get(str(data.get("stopReason", "")), StopReason.END_TURN)
        elif kind == "metadata":
            usage = data.get("usage") or {}
            self._usage = Usage(
                input_tokens=int(usage.get("inputTokens", 0)) + int(usage.get("cacheWriteInputTokens", 0)),
                output_tokens=int(usage.get("outputTokens", 0)),
                cached_read_tokens=int(usage.get("cacheReadInputTokens", 0)),
            )
        return []

    def finish(self) -> list[Event]:
        """The closing events once the body ended; raises when ``messageStop`` never came."""
        if self._stop is None:
            raise truncated_stream(PROVIDER_NAME)
        return [*([self._usage] if self._usage else []), Done(self._stop)]

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Event]:
        if "text" in delta:
            return [TextDelta(str(delta["text"]))] if delta["text"] else []
        if "toolUse" in delta and index in self._tools:
            self._tools[index][2].append(str((delta["toolUse"] or {}).get("input", "")))
            return []
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict):
            if reasoning.get("text"):
                return [ReasoningDelta(text=str(reasoning["text"]))]
            if reasoning.get("signature"):
                return [ReasoningDelta(text="", signature=str(reasoning["signature"]))]
            if reasoning.get("redactedContent"):
                return [ReasoningDelta(text=str(reasoning["redactedContent"]), redacted=True)]
        return []

    def _exception(self, kind: str, payload: bytes) -> ProviderError:
        try:
            message = str(json.loads(payload).get("message", ""))
        except (ValueError, AttributeError):
            message = ""
        message = redact_secrets(message, *self._secrets)[:500]
        caller = kind == "validationException"
        return ProviderError(
            f"{PROVIDER_NAME} failed while answering ({kind or 'unknown'}): {message}",
            status=429 if kind == "throttlingException" else 0,
            retryable=kind in _RETRYABLE_EXCEPTIONS,
            error_class=ErrorClass.CALLER if caller else None,
            code=kind or "stream_error",
        )


def _json_object(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload or b"{}")
    except ValueError as exc:
        raise ProviderError(
            f"{PROVIDER_NAME} sent an event that is not JSON", retryable=True, code="malformed_event"
        ) from exc
    return doc if isinstance(doc, dict) else {}


def _default_credentials() -> Credentials | None:
    """Credentials from botocore's default chain; blocking (it may read files or call the instance metadata service)."""
    return botocore.session.get_session().get_credentials()


class BedrockProvider:
    """A configured Bedrock service in one region; one upstream attempt per ``stream`` call."""

    def __init__(self, settings: ServiceSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._chain: Credentials | None = None
        self._secrets = tuple(s for s in (settings.aws_secret_access_key, settings.api_key) if s)

    def _runtime_base(self) -> str:
        if self.settings.api_url:
            return self.settings.api_url.rstrip("/")
        return f"https://bedrock-runtime.{self._region()}.amazonaws.com"

    def _region(self) -> str:
        if not self.settings.region:
            raise InvalidInput("the Bedrock service has no AWS region configured", field="region")
        return self.settings.region

    async def _credentials(self) -> ReadOnlyCredentials:
        s = self.settings
        if s.aws_access_key_id and s.aws_secret_access_key:
            return ReadOnlyCredentials(s.aws_access_key_id, s.aws_secret_access_key, None)
        if self._chain is None:
            self._chain = await asyncio.to_thread(_default_credentials)
        if self._chain is None:
            raise ProviderError(
                "no AWS credentials: set the service's access keys or give the server an IAM role",
                error_class=ErrorClass.PROVIDER,
                code="no_credentials",
            )
        # Refreshable (role) credentials may refresh over the network when they near expiry.
        return await asyncio.to_thread(self._chain.get_frozen_credentials)

    async def _signed_headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        s = self.settings
        if s.api_key and not (s.aws_access_key_id and s.aws_secret_access_key):
            return {**headers, "Authorization": f"Bearer {s.api_key}"}
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(await self._credentials(), SIGNING_SERVICE, self._region()).add_auth(request)
        return dict(request.headers.items())

    async def _send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> aiohttp.ClientResponse:
        signed = await self._signed_headers(method, url, body, headers)
        try:
            # encoded=True: the path was signed exactly as written (%3A in model ids stays as is).
            response = await self._session.request(method, URL(url, encoded=True), data=body, headers=signed)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("request to %s failed: %s", PROVIDER_NAME, type(exc).__name__)
            raise provider_error_from_exception(exc, PROVIDER_NAME) from None
        if response.status != 200:
            async with response:
                error_body = await read_bounded(response, MAX_ERROR_BODY_BYTES)
                raise provider_error_from_response(
                    response.status, response.headers, error_body, PROVIDER_NAME, secrets=self._secrets
                )
        return response

    async def stream(self, request: CompletionRequest) -> AsyncIterator[Event]:
        """Stream one ConverseStream call as normalised events."""
        model = resolve_model(request, self.settings)
        body = json.dumps(build_request_body(request, self.settings)).encode()
        url = f"{self._runtime_base()}/model/{quote(model, safe='')}/converse-stream"
        headers = {"Content-Type": "application/json", "Accept": "application/vnd.amazon.eventstream"}
        response = await self._send("POST", url, body, headers)
        decoder = ConverseStreamDecoder(self._secrets)
        frames = EventStreamBuffer()
        finished = False
        try:
            async for chunk in response.content.iter_any():
                frames.add_data(chunk)
                for frame in frames:
                    # botocore-stubs declare EventStreamMessage.headers an int; botocore sets the parsed dict.
                    for event in decoder.feed(frame.headers, frame.payload):  # type: ignore[arg-type]
                        yield event
            closing = decoder.finish()
            finished = True
        except (InvalidPayloadLength, InvalidHeadersLength):
            # botocore refuses frames over its limits before buffering them: memory stays bounded.
            raise ProviderError(
                f"{PROVIDER_NAME} sent an event-stream frame longer than the decoder allows",
                retryable=False,
                code="frame_too_long",
            ) from None
        except ParserError:
            raise ProviderError(
                f"{PROVIDER_NAME} sent a malformed event-stream frame; try again",
                retryable=True,
                code="malformed_frame",
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("stream from %s broke: %s", PROVIDER_NAME, type(exc).__name__)
            raise provider_error_from_exception(exc, PROVIDER_NAME) from None
        finally:
            if finished:
                response.release()
            else:
                # Dropping the connection tells Bedrock to stop generating (and billing) for a
                # stream nobody reads any more.
                response.close()
        for event in closing:
            yield event

    async def list_models(self) -> list[str]:
        """Text-generating foundation models from the control plane (``GET /foundation-models``)."""
        base = self.settings.api_url.rstrip("/") or f"https://bedrock.{self._region()}.amazonaws.com"
        url = f"{base}/foundation-models?byOutputModality=TEXT"
        response = await self._send("GET", url, b"", {"Accept": "application/json"})
        async with response:
            doc = await response.json()
        return [str(m["modelId"]) for m in doc.get("modelSummaries", []) if m.get("modelId")]

    async def aclose(self) -> None:
        """Nothing to release: the session belongs to the caller."""


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> BedrockProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return BedrockProvider(settings, session)
