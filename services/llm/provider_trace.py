"""LLM Trace (the plugin configuration's ``enableLLMTrace``): what the llm service sends providers
and what they answer, as structured log records, with every credential redacted.

While it is on, each provider request is logged as it goes on the wire (``llm_trace: request``:
method, URL, headers, JSON body), its response when the headers arrive (``llm_trace: response``:
status, headers), and each completion once its stream ended (``llm_trace: completion``: the text,
reasoning, tool calls, citations, usage and stop reason the provider's events added up to). Bodies
of streams are not buffered for the log: the completion record is the answer in full. The records
are written whatever ``AGENTS_LOG_LEVEL`` says: the admin asked for them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from services.common.telemetry import REDACTED, is_secret_name
from services.common.upstream_replies import redact_secrets
from services.llm.streaming import CompletionResult

logger = logging.getLogger(__name__)

# Headers that carry a credential without saying so in their name (the rest: ``is_secret_name``).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# JSON body keys that hold a credential, compared lower case without ``_`` and ``-``. Narrower than
# the header rule on purpose: ``max_tokens`` and ``input_tokens`` are what a trace is read for.
_SECRET_BODY_KEYS = frozenset(
    {
        "apikey",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "token",
        "clientsecret",
        "secret",
        "password",
        "assertion",
        "privatekey",
        "secretaccesskey",
        "sessiontoken",
        "authorization",
    }
)


def redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the value of each credential header replaced by ``REDACTED``."""
    return {
        name: REDACTED if name.lower() in _SECRET_HEADERS or is_secret_name(name) else value
        for name, value in headers.items()
    }


def redacted_body(value: Any) -> Any:
    """A JSON document with the values of its credential keys replaced by ``REDACTED``."""
    if isinstance(value, dict):
        return {
            key: REDACTED if key.lower().replace("_", "").replace("-", "") in _SECRET_BODY_KEYS else redacted_body(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redacted_body(item) for item in value]
    return value


def _body_of(request: aiohttp.ClientRequest) -> str:
    body = request.body
    if not body:
        return ""
    content_type = request.headers.get("Content-Type", "")
    if "json" not in content_type:
        # Audio uploads and token exchanges (form-encoded assertions): their size, not their bytes.
        return f"<{content_type or 'body'}: {body.size} bytes, not logged>"
    try:
        document = json.loads(body.decode())
    except ValueError:
        return "<malformed JSON, not logged>"
    # Key-shaped strings anywhere (a key pasted into a prompt) are scrubbed too.
    return redact_secrets(json.dumps(redacted_body(document), ensure_ascii=False))


class ProviderTrace:
    """An aiohttp client middleware logging provider requests and responses while ``enabled``,
    and the completion record ``CompletionService`` hands over at the end of each stream."""

    def __init__(self) -> None:
        self._enabled = False

    @property
    def enabled(self) -> bool:
        """Whether provider calls are traced."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self._enabled = on
        # INFO even under a service level of WARNING; NOTSET: back to the service's level.
        logger.setLevel(logging.INFO if on else logging.NOTSET)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        """Send ``request``, logging it and its response's head while tracing is on."""
        if not self.enabled:
            return await handler(request)
        # The URL is logged as a field: the JSON formatter redacts secret query parameters (``?key=``).
        url = str(request.url)
        logger.info(
            "llm trace: provider request",
            extra={
                "llm_trace": "request",
                "method": request.method,
                "url": url,
                "headers": json.dumps(redacted_headers(request.headers)),
                "body": _body_of(request),
            },
        )
        response = await handler(request)
        logger.info(
            "llm trace: provider response",
            extra={
                "llm_trace": "response",
                "method": request.method,
                "url": url,
                "status": response.status,
                "headers": json.dumps(redacted_headers(response.headers)),
            },
        )
        return response

    def completion(
        self, service_id: str, provider: str, model: str, result: CompletionResult, *, failure: str = ""
    ) -> None:
        """Log what one completion's stream added up to, and ``failure``, the error that ended it
        before its first event (the provider's refusal, a host not allowed), if one did."""
        logger.info(
            "llm trace: completion",
            extra={
                "llm_trace": "completion",
                "service_id": service_id,
                "provider": provider,
                "model": model,
                "result": redact_secrets(json.dumps(dataclasses.asdict(result), default=str, ensure_ascii=False)),
                "failure": redact_secrets(failure),
            },
        )
