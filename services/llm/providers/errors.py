"""One mapping from upstream HTTP failures to ``ProviderError``, shared by every provider.

Providers hand over the status, headers and (bounded) body of a failed response; the mapper
decides who has to act (the caller, an admin, the provider) and whether the streaming engine may
retry. Messages are safe to show a user: they quote the provider's own message, with any API key
the provider echoed back scrubbed out, and never include our credentials.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from services.common.errors import ErrorClass
from services.common.upstream_replies import parse_retry_after, redact_secrets
from services.llm.providers.base import ProviderError

MAX_ERROR_BODY_BYTES = 64 * 1024  # error bodies are small JSON; never buffer a huge one
_MAX_QUOTED_MESSAGE = 500

_MODEL_NOT_FOUND_CODES = {"model_not_found", "deploymentnotfound", "not_found_error", "invalid_model"}
_MODEL_WORDS = re.compile(
    r"(?i)(model|deployment)[^.]{0,80}(does not exist|not found|unknown|invalid|not supported|"
    r"do not have access)|(unknown|invalid|no such) (model|deployment)"
)


def provider_error_from_response(
    status: int,
    headers: Mapping[str, str],
    body_bytes: bytes,
    provider_name: str,
    *,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """Map a non-2xx upstream response to a ``ProviderError`` with the right class and retryability."""
    code, upstream_message = _parse_error_body(body_bytes)
    quoted = redact_secrets(upstream_message, *secrets)[:_MAX_QUOTED_MESSAGE]
    suffix = f": {quoted}" if quoted else ""

    if code == "insufficient_quota" or "insufficient_quota" in upstream_message:
        return ProviderError(
            f"the {provider_name} account is out of quota; an admin must add credit or raise the limit{suffix}",
            status=status,
            retryable=False,
            error_class=ErrorClass.PROVIDER,
            code="insufficient_quota",
        )
    if status == 429:
        retry_after = parse_retry_after(headers)
        return ProviderError(
            f"{provider_name} is rate limiting requests; try again {_when(retry_after)}{suffix}",
            status=status,
            retryable=True,
            retry_after=retry_after,
            code=code or "rate_limited",
        )
    if status in (401, 403):
        return ProviderError(
            f"{provider_name} rejected the API key; an admin must update the service",
            status=status,
            retryable=False,
            error_class=ErrorClass.PROVIDER,
            code=code or "unauthorized",
        )
    if status in (400, 404, 422) and _mentions_unknown_model(code, upstream_message):
        return ProviderError(
            f"{provider_name} does not know the requested model{suffix}",
            status=status,
            retryable=False,
            error_class=ErrorClass.CALLER,
            code="model_not_found",
        )
    if status == 408 or status >= 500:
        return ProviderError(
            f"{provider_name} is unavailable (HTTP {status}); try again{suffix}",
            status=status,
            retryable=True,
            retry_after=parse_retry_after(headers),
            code=code or "upstream_unavailable",
        )
    if 400 <= status < 500:
        return ProviderError(
            f"{provider_name} refused the request (HTTP {status}){suffix}",
            status=status,
            retryable=False,
            error_class=ErrorClass.CALLER,
            code=code or "bad_request",
        )
    return ProviderError(
        f"{provider_name} answered with unexpected HTTP {status}{suffix}",
        status=status,
        retryable=False,
        code=code,
    )


def _when(retry_after: float | None) -> str:
    """When to try again, as a user reads it: the provider's ``Retry-After`` when it sent one."""
    if retry_after is None:
        return "shortly"
    seconds = max(1, math.ceil(retry_after))
    return f"in {seconds} second{'' if seconds == 1 else 's'}"


def provider_error_from_exception(exc: BaseException, provider_name: str) -> ProviderError:
    """A connection-level failure (refused, reset, TLS, DNS, read timeout): retryable, status 0."""
    kind = type(exc).__name__
    return ProviderError(
        f"could not reach {provider_name} ({kind}); try again",
        status=0,
        retryable=True,
        code="connection_error",
    )


def truncated_stream(provider_name: str) -> ProviderError:
    """A stream whose body ended before the wire format's last event: retryable (nothing may
    have reached the user yet, and the engine retries only then)."""
    return ProviderError(
        f"{provider_name} ended the stream before it finished; try again",
        retryable=True,
        code="truncated_stream",
    )


def stream_error_event(
    payload: Mapping[str, Any], provider_name: str, *, secrets: tuple[str, ...] = ()
) -> ProviderError:
    """Map an error object sent inside a 200 stream (``{"error": {...}}`` or a ``response.failed``)."""
    code = str(payload.get("code") or payload.get("type") or "")
    message = redact_secrets(str(payload.get("message") or ""), *secrets)[:_MAX_QUOTED_MESSAGE]
    if code == "insufficient_quota":
        return provider_error_from_response(429, {}, json.dumps({"error": dict(payload)}).encode(), provider_name)
    retryable = code in {"server_error", "rate_limit_exceeded", "overloaded_error", "internal_error", ""}
    suffix = f": {message}" if message else ""
    return ProviderError(
        f"{provider_name} failed while answering{suffix}",
        status=0,
        retryable=retryable,
        code=code or "stream_error",
    )


def _parse_error_body(body: bytes) -> tuple[str, str]:
    """(code, message) from the common JSON error shapes, or ("", short text) for anything else."""
    text = body[:MAX_ERROR_BODY_BYTES].decode("utf-8", errors="replace").strip()
    try:
        doc = json.loads(text)
    except ValueError:
        return "", " ".join(text.split())[:_MAX_QUOTED_MESSAGE]
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]  # Gemini wraps its error in a one-element list
    if not isinstance(doc, dict):
        return "", ""
    err = doc.get("error", doc)
    if isinstance(err, str):
        return str(doc.get("code") or doc.get("type") or ""), err
    if not isinstance(err, dict):
        return "", ""
    code = err.get("code") or err.get("type") or err.get("status") or ""
    message = err.get("message") or doc.get("message") or doc.get("detail") or ""
    if not isinstance(message, str):
        message = json.dumps(message)[:_MAX_QUOTED_MESSAGE]
    return str(code), message


def _mentions_unknown_model(code: str, message: str) -> bool:
    return code.lower() in _MODEL_NOT_FOUND_CODES or bool(_MODEL_WORDS.search(message))
