"""HTTP plumbing of the Mattermost client: auth header, error mapping, retries, size caps.

Mattermost answers errors with an AppError body ``{id, message, detailed_error, request_id,
status_code}``; its ``message`` is safe to surface, the token never is. Idempotent requests are
retried on 429/5xx/connection errors with bounded exponential backoff that honours Retry-After.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

from services.common.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    UpstreamUnavailable,
)
from services.common.http import new_client_session

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v4"

_STATUS_ERRORS: dict[int, type[DomainError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header; Mattermost's rate limiter sends whole seconds."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        # The HTTP-date form is legal but unused by Mattermost; fall back to our own backoff.
        return None
    return max(seconds, 0.0)


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


def error_for_status(method: str, path: str, status: int, body: bytes, headers: Mapping[str, str]) -> DomainError:
    """The domain error for a non-2xx answer. The message names the route, never the token."""
    detail = _error_message(body)
    message = f"Mattermost {method} {path} answered {status}" + (f": {detail}" if detail else "")
    if status == 429 or status >= 500:
        return UpstreamUnavailable(message, retry_after=parse_retry_after(headers.get("Retry-After")))
    return _STATUS_ERRORS.get(status, InvalidInput)(message)


class _RetryWait:
    """Exponential backoff with jitter, replaced by Retry-After (capped) when the server sent one."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._maximum = maximum
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, UpstreamUnavailable) and error.retry_after is not None:
            return min(error.retry_after, self._maximum)
        return float(self._backoff(state))


class Transport:
    """Sends authenticated requests to one Mattermost server and maps failures to domain errors."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None,
        timeout: float,
        retry_attempts: int,
        retry_initial_wait: float,
        retry_max_wait: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = max(1, retry_attempts)
        self._wait = _RetryWait(retry_initial_wait, retry_max_wait)

    def __repr__(self) -> str:
        # Deliberately without the token.
        return f"Transport(base_url={self.base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running loop, never at construction or import time.
        if self._session is None or self._session.closed:
            self._session = new_client_session(total_timeout=self._timeout.total)
            self._owns_session = True
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: aiohttp.FormData | None = None,
        idempotent: bool = False,
        max_bytes: int | None = None,
        truncate: bool = False,
    ) -> bytes:
        """Send one request (retried when ``idempotent``) and return the raw 2xx body. A body over
        ``max_bytes`` is InvalidInput, or with ``truncate`` its first ``max_bytes`` bytes."""
        cap = _Cap(max_bytes, truncate)
        if not idempotent:
            return await self._send(method, path, params, json_body, data, cap)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(UpstreamUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    logger.info(
                        "retrying Mattermost request",
                        extra={"method": method, "path": path, "attempt": attempt.retry_state.attempt_number},
                    )
                return await self._send(method, path, params, json_body, data, cap)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Like ``request`` but decodes the JSON body."""
        body = await self.request(method, path, **kwargs)
        try:
            return json.loads(body) if body else None
        except ValueError as exc:
            raise UpstreamUnavailable(f"Mattermost {method} {path} answered with invalid JSON") from exc

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json_body: Any,
        data: aiohttp.FormData | None,
        cap: _Cap,
    ) -> bytes:
        url = f"{self.base_url}{API_PREFIX}{path}"
        headers = {"Authorization": f"Bearer {self._token}", "X-Requested-With": "XMLHttpRequest"}
        try:
            async with self._client().request(
                method, url, params=params, json=json_body, data=data, headers=headers, timeout=self._timeout
            ) as response:
                if response.status >= 300:
                    body = await response.content.read(64 * 1024)
                    raise error_for_status(method, path, response.status, body, response.headers)
                return await _read_capped(response, cap, method, path)
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"Mattermost {method} {path} timed out", timeout=True) from exc
        except aiohttp.ClientError as exc:
            # The exception's text names host and port only; the token lives in headers it never prints.
            raise UpstreamUnavailable(f"Mattermost {method} {path} failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class _Cap:
    """The most body bytes read (None: all), and whether more is an error or cut off."""

    max_bytes: int | None
    truncate: bool


async def _read_capped(response: aiohttp.ClientResponse, cap: _Cap, method: str, path: str) -> bytes:
    max_bytes = cap.max_bytes
    if max_bytes is None:
        return await response.read()
    too_large = InvalidInput(f"Mattermost {method} {path}: body larger than {max_bytes} bytes", field="size")
    if not cap.truncate and response.content_length is not None and response.content_length > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        total += len(chunk)
        chunks.append(chunk)
        if total > max_bytes:
            if not cap.truncate:
                raise too_large
            break  # the rest is never read: the connection is closed, not reused
    return b"".join(chunks)[:max_bytes]
