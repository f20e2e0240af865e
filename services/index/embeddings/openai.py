"""Embeddings from OpenAI, OpenAI-compatible servers and Azure OpenAI, over the outbound guard.

One wire API (``POST .../embeddings`` with ``input``: a list of texts) in three dialects: OpenAI
takes ``model`` and a bearer key, Azure names the deployment in the URL and takes ``api-key``, and
a compatible server may have no key. OpenAI and Azure answer in base64 (a quarter of the JSON
floats' size, as OpenAI's own client asks); compatible servers are asked for floats, which they all
speak. Every URL goes through ``GuardedHttpClient``: an admin's URL still cannot reach a private
address the outbound policy does not allow.
"""

from __future__ import annotations

import array
import asyncio
import base64
import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from services.common.errors import (
    DomainError,
    FailedPrecondition,
    PermissionDenied,
    QuotaExceeded,
    UpstreamUnavailable,
)
from services.common.http_guard import DestinationRefused, GuardedHttpClient, GuardedResponse, OutboundPolicy
from services.common.upstream_replies import parse_retry_after, redact_secrets
from services.index.chunking import encoding
from services.index.embeddings.batching import plan_batches
from services.index.embeddings.pacing import Pacer
from services.index.embeddings.settings import EmbeddingSettings, ProviderKind

logger = logging.getLogger(__name__)

# text-embedding-ada-002 has one size and refuses a ``dimensions`` field.
_FIXED_SIZE_MODELS = frozenset({"text-embedding-ada-002"})
# A base64 float32 is ~5.4 bytes of JSON, a float ~20: room for a full batch of floats plus framing.
_BYTES_PER_DIMENSION = 24
_MAX_QUOTED = 300
# Tries per batch; with the backoff below a batch gives up after about a minute of failures.
MAX_ATTEMPTS = 6
# A Retry-After longer than this is not waited out in full (a provider asking for an hour).
MAX_RETRY_AFTER = 60.0
# Full jitter, 0.5 s doubling to 30 s, when the provider does not say when to come back.
_BACKOFF = wait_random_exponential(multiplier=0.5, max=30.0)
# Counting tokens of this many characters, or decoding a response of this many bytes, or more is
# moved off the event loop.
_THREAD_THRESHOLD_CHARS = 32_000
_THREAD_THRESHOLD_BYTES = 256 * 1024


def outbound_policy(settings: EmbeddingSettings, base: OutboundPolicy) -> OutboundPolicy:
    """``base`` with a response cap that fits a full batch of vectors (JSON floats for compatible servers)."""
    needed = settings.max_inputs * settings.dimensions * _BYTES_PER_DIMENSION + 1024 * 1024
    return dataclasses.replace(base, max_response_bytes=max(base.max_response_bytes, needed))


class OpenAIEmbedder:
    """Embeds texts with one configured model; vectors come back in the order of the texts."""

    def __init__(self, settings: EmbeddingSettings, http: GuardedHttpClient) -> None:
        self.settings = settings
        self._http = http
        self._url = settings.endpoint()
        self._base64 = settings.kind is not ProviderKind.OPENAI_COMPATIBLE
        self._pacer = Pacer(max_concurrency=settings.max_concurrency, tokens_per_minute=settings.tokens_per_minute)

    @property
    def dimensions(self) -> int:
        """The length of every vector this embedder returns."""
        return self.settings.dimensions

    @property
    def model_key(self) -> str:
        """Provider, model and dimensions: vectors with different keys are never compared."""
        return self.settings.model_key

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.close()

    @property
    def concurrency(self) -> int:
        """Requests the embedder lets be in flight now (it adapts to the provider's 429s)."""
        return self._pacer.concurrency

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in batches within the provider's caps, sent concurrently.

        Rate limits and outages are retried with backoff (honouring ``Retry-After``) up to
        ``MAX_ATTEMPTS`` times per batch. Raises ``InvalidInput`` (a text over the model's input
        limit), ``QuotaExceeded`` (still rate limited), ``UpstreamUnavailable`` (provider still
        down) and ``FailedPrecondition`` (the provider refuses the configuration: key, model,
        dimensions).
        """
        if not texts:
            return []
        counts = await _count_tokens(texts)
        batches = plan_batches(counts, max_inputs=self.settings.max_inputs, max_tokens=self.settings.max_request_tokens)
        tasks = [
            asyncio.ensure_future(self._embed_paced([texts[i] for i in batch], sum(counts[i] for i in batch)))
            for batch in batches
        ]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            # The first failure is the caller's answer; the other batches are of no use now.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [vector for vectors in results for vector in vectors]

    async def _embed_paced(self, texts: Sequence[str], tokens: int) -> list[list[float]]:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((QuotaExceeded, UpstreamUnavailable)),
            wait=_retry_wait,
            stop=stop_after_attempt(MAX_ATTEMPTS),
            before_sleep=_log_retry,
            reraise=True,
        )
        return await retrying(self._send_paced, texts, tokens)

    async def _send_paced(self, texts: Sequence[str], tokens: int) -> list[list[float]]:
        async with self._pacer.slot(tokens) as sent_at:
            try:
                vectors = await self._post(texts)
            except (QuotaExceeded, UpstreamUnavailable) as exc:
                if isinstance(exc, QuotaExceeded):
                    self._pacer.backoff(sent_at)
                if exc.retry_after is not None:
                    self._pacer.hold(min(exc.retry_after, MAX_RETRY_AFTER))
                raise
            self._pacer.succeeded()
            return vectors

    async def _post(self, texts: Sequence[str]) -> list[list[float]]:
        """One request for ``texts`` (already within the caps)."""
        try:
            response = await self._http.request("POST", self._url, headers=self._headers(), json=self._body(texts))
        except DestinationRefused as exc:
            # The provider's address is the admin's business, not the searching user's: the log has it.
            logger.warning("embedding request refused: %s", exc.message)
            raise PermissionDenied(
                "the embedding provider's address is not allowed: an admin must list its host in "
                "allowedUpstreamHostnames (a private address also in AGENTS_INDEX_EMBEDDING_PRIVATE_HOSTNAMES)"
            ) from None
        if response.status != 200:
            raise self._error(response)
        if len(response.body) < _THREAD_THRESHOLD_BYTES:
            return self._vectors(response, len(texts))
        # A full batch is megabytes of JSON to parse and decode: not on the event loop.
        return await asyncio.to_thread(self._vectors, response, len(texts))

    def _headers(self) -> dict[str, str]:
        if self.settings.kind is ProviderKind.AZURE:
            return {"api-key": self.settings.api_key}
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    def _body(self, texts: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"input": list(texts), "encoding_format": "base64" if self._base64 else "float"}
        if self.settings.kind is not ProviderKind.AZURE:
            body["model"] = self.settings.model
        if self.settings.model not in _FIXED_SIZE_MODELS:
            body["dimensions"] = self.settings.dimensions
        return body

    def _vectors(self, response: GuardedResponse, expected: int) -> list[list[float]]:
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda row: row["index"])
            vectors = [_decode(row["embedding"]) for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise UpstreamUnavailable(
                f"{self._host()} sent an embeddings response that is not the expected JSON"
            ) from exc
        if len(vectors) != expected:
            raise UpstreamUnavailable(f"{self._host()} answered {len(vectors)} embeddings for {expected} inputs")
        for vector in vectors:
            if len(vector) != self.settings.dimensions:
                raise FailedPrecondition(
                    f"model {self.settings.model} returned {len(vector)} dimensions but the configuration says "
                    f"{self.settings.dimensions}; set dimensions to match the model"
                )
        return vectors

    def _error(self, response: GuardedResponse) -> DomainError:
        host = self._host()
        retry_after = parse_retry_after(response.headers)
        if response.status == 429:
            return QuotaExceeded(f"{host} is rate limiting embeddings requests", retry_after=retry_after)
        if response.status >= 500 or response.status == 408:
            return UpstreamUnavailable(f"{host} failed with HTTP {response.status}", retry_after=retry_after)
        quoted = redact_secrets(_upstream_message(response), self.settings.api_key)[:_MAX_QUOTED]
        return FailedPrecondition(
            f"{host} refused the embeddings request (HTTP {response.status}){': ' + quoted if quoted else ''}; "
            "check the embedding provider's key, model and dimensions"
        )

    def _host(self) -> str:
        return "the Azure OpenAI endpoint" if self.settings.kind is ProviderKind.AZURE else "the embedding provider"


async def _count_tokens(texts: Sequence[str]) -> list[int]:
    enc = await asyncio.to_thread(encoding)  # loads once (a few hundred ms), then cached

    def count() -> list[int]:
        # Not encode_batch: it starts a thread pool per call and a task per text, which cost a
        # reindex more than the counting itself.
        return [len(enc.encode(text, disallowed_special=())) for text in texts]

    if sum(len(t) for t in texts) >= _THREAD_THRESHOLD_CHARS:
        return await asyncio.to_thread(count)
    return count()


def _retry_wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, QuotaExceeded | UpstreamUnavailable) and error.retry_after is not None:
        return 0.0  # the pacer holds every request until then
    return _BACKOFF(state)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning(
        "embeddings request failed; trying again",
        extra={
            "attempt": state.attempt_number,
            "retry_in": state.next_action.sleep if state.next_action else 0.0,
            "error": error.message if isinstance(error, DomainError) else type(error).__name__,
        },
    )


def _decode(embedding: Any) -> list[float]:
    if isinstance(embedding, str):
        values = array.array("f")
        values.frombytes(base64.b64decode(embedding))
        if sys.byteorder == "big":  # the wire format is little-endian float32
            values.byteswap()
        return values.tolist()
    if isinstance(embedding, list):
        return [float(v) for v in embedding]
    raise TypeError("embedding is neither base64 nor a list")


def _upstream_message(response: GuardedResponse) -> str:
    try:
        doc = response.json()
    except ValueError:
        return ""
    error = doc.get("error") if isinstance(doc, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    return message if isinstance(message, str) else ""
