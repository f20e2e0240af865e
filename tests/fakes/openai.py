"""A fake OpenAI-style upstream over real loopback HTTP, speaking the real wire formats.

Serves ``/v1/chat/completions`` (OpenAI and, with ``flavor="mistral"``, Mistral's variant),
``/v1/responses``, ``/v1/models``, Whisper's ``/v1/audio/transcriptions`` and Azure's
``/openai/deployments/{d}/chat/completions`` (and ``/audio/transcriptions``) and
``/openai/v1/responses``. Each request takes the next scripted ``FakeResponse`` (or the default
answer), and every request's path, query, headers and body are recorded for assertions.

``python -m tests.fakes.openai --port P --ttft-ms 20 --token-delay-ms 5 --tokens 50`` serves the
default answer to every request (for benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import leftovers
from tests.fakes.openai_script import DEFAULT_ANSWER, FakeResponse
from tests.fakes.openai_wire import play_chat, play_responses


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    """Start with ``async with FakeOpenAI() as fake``; point a service at ``fake.base_url``."""

    api_key: str = "sk-test-fake-key-0123456789"
    flavor: str = "openai"  # "openai" or "mistral": changes chat-completions validation and shape
    # models the fake knows; a request for another gets the provider's "unknown model" error.
    # Empty: accept any model (the benchmark server).
    models: tuple[str, ...] = ("gpt-4o", "gpt-5", "mistral-large-latest", "my-deployment")
    ttft: float = 0.0
    token_delay: float = 0.0
    default_tokens: int = 5
    # What /audio/transcriptions answers (as WebVTT, or as its text for other response formats).
    transcript_vtt: str = "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nHello from the recording.\n"
    requests: list[RecordedRequest] = field(default_factory=list)
    disconnects: int = 0
    # Scripted or default answers written out in full (the client may not have read them yet).
    completed: int = 0
    _queue: deque[FakeResponse] = field(default_factory=deque)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._azure_chat)
        app.router.add_post("/openai/v1/responses", self._responses)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/openai/deployments/{deployment}/audio/transcriptions", self._transcriptions)
        app.router.add_get("/openai/v1/models", self._models)
        # handler_cancellation: a client hanging up cancels the handler, which is how a stalled
        # stream notices (and records) the disconnect.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
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

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """Root URL (what Azure's endpoint setting holds)."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The ``/v1`` base (what OpenAI/compatible/Mistral ``api_url`` holds)."""
        return f"{self.url}/v1"

    # ---- scripting and assertions ------------------------------------------------------------

    def enqueue(self, *responses: FakeResponse) -> None:
        """Answer the next requests with these, in order; afterwards the default answer."""
        self._queue.extend(responses)

    def drop_script(self) -> None:
        """Forget the scripted answers not served yet: the next request gets the default answer."""
        self._queue.clear()

    @property
    def queued(self) -> int:
        """Scripted answers not yet served."""
        return len(self._queue)

    async def wait_for_disconnect(self, within: float = 5.0) -> None:
        """Return once a client hung up mid-response; raise TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            await self._disconnected.wait()

    def record_disconnect(self) -> None:
        self.disconnects += 1
        self._disconnected.set()

    # ---- handlers ----------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            body = {}
        self.requests.append(RecordedRequest(request.path, dict(request.query), dict(request.headers), body))
        return body if isinstance(body, dict) else {}

    def _next(self) -> FakeResponse:
        return self._queue.popleft() if self._queue else FakeResponse.text(DEFAULT_ANSWER, tokens=self.default_tokens)

    def _authorized(self, request: web.Request, *, azure: bool) -> bool:
        if not self.api_key:
            return True
        if azure:
            return request.headers.get("api-key") == self.api_key
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _unauthorized(self) -> web.Response:
        # Real OpenAI echoes a masked key; the client must scrub even that.
        masked = f"{self.api_key[:6]}***{self.api_key[-4:]}"
        return web.json_response(
            {
                "error": {
                    "message": f"Incorrect API key provided: {masked}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
            status=401,
        )

    def _unknown_model(self, model: str, *, azure: bool = False) -> web.Response:
        if azure:
            body = {
                "error": {
                    "code": "DeploymentNotFound",
                    "message": "The API deployment for this resource does not exist. If you created the "
                    "deployment within the last 5 minutes, please wait a moment and try again.",
                }
            }
            return web.json_response(body, status=404)
        if self.flavor == "mistral":
            body = {
                "object": "error",
                "message": f"Invalid model: {model}",
                "type": "invalid_model",
                "code": "1500",
            }
            return web.json_response(body, status=400)
        body = {
            "error": {
                "message": f"The model `{model}` does not exist or you do not have access to it.",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
        }
        return web.json_response(body, status=404)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not self._authorized(request, azure=False):
            return self._unauthorized()
        if self.flavor == "mistral":
            extra = sorted(set(body) & {"stream_options", "user", "reasoning_effort"})
            if extra:
                # Mistral validates strictly and rejects fields it does not know.
                detail = [
                    {"type": "extra_forbidden", "loc": ["body", k], "msg": "Extra inputs are not permitted"}
                    for k in extra
                ]
                return web.json_response({"object": "error", "message": {"detail": detail}}, status=422)
        if self.models and body.get("model") not in self.models:
            return self._unknown_model(str(body.get("model")))
        return await self._play(request, body, chat=True)

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not self._authorized(request, azure=True):
            return self._unauthorized()
        if not request.query.get("api-version"):
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        if self.models and request.match_info["deployment"] not in self.models:
            return self._unknown_model(request.match_info["deployment"], azure=True)
        return await self._play(request, body, chat=True)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not self._authorized(request, azure=request.path.startswith("/openai/")):
            return self._unauthorized()
        if self.models and body.get("model") not in self.models:
            return self._unknown_model(str(body.get("model")))
        return await self._play(request, body, chat=False)

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if not self._authorized(request, azure=request.path.startswith("/openai/")):
            return self._unauthorized()
        now = int(time.time())
        data = [{"id": m, "object": "model", "created": now, "owned_by": "fake"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _transcriptions(self, request: web.Request) -> web.Response:
        """Whisper's multipart upload: ``file`` and ``model`` required, ``response_format`` one of
        json (default), text, srt, verbose_json, vtt. Recorded with the file's name, type and size."""
        azure = "deployment" in request.match_info
        form = await request.post()
        upload = form.get("file")
        fields = {k: str(v) for k, v in form.items() if not isinstance(v, web.FileField)}
        body: dict[str, Any] = dict(fields)
        if isinstance(upload, web.FileField):
            content = upload.file.read()
            body["file"] = {"filename": upload.filename, "content_type": upload.content_type, "size": len(content)}
        self.requests.append(RecordedRequest(request.path, dict(request.query), dict(request.headers), body))
        if not self._authorized(request, azure=azure):
            return self._unauthorized()
        if not isinstance(upload, web.FileField) or (not fields.get("model") and not azure):
            missing = "file" if not isinstance(upload, web.FileField) else "model"
            error = {"message": f"you must provide a {missing}", "type": "invalid_request_error", "param": missing}
            return web.json_response({"error": {**error, "code": None}}, status=400)
        text = " ".join(
            line for line in self.transcript_vtt.splitlines() if line.strip() and "-->" not in line and line != "WEBVTT"
        )
        form_of_answer = fields.get("response_format", "json")
        if form_of_answer == "vtt":
            return web.Response(text=self.transcript_vtt, content_type="text/vtt")
        if form_of_answer == "text":
            return web.Response(text=text, content_type="text/plain")
        return web.json_response({"text": text})

    async def _play(self, request: web.Request, body: dict[str, Any], *, chat: bool) -> web.StreamResponse:
        scripted = _capped(self._next(), body, chat=chat)
        if scripted.status != 200:
            return web.json_response(scripted.error_body, status=scripted.status, headers=scripted.headers)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        ttft = self.ttft if scripted.ttft is None else scripted.ttft
        delay = self.token_delay if scripted.token_delay is None else scripted.token_delay
        try:
            if scripted.hold is not None:
                await scripted.hold.wait()
            if ttft:
                await asyncio.sleep(ttft)
            if chat:
                await play_chat(resp, scripted, body, flavor=self.flavor, token_delay=delay)
            else:
                await play_responses(resp, scripted, body, token_delay=delay)
        except asyncio.CancelledError:
            self.record_disconnect()
            raise
        except ConnectionResetError:
            # The client hung up between two writes: nothing more to send, and no error to log.
            self.record_disconnect()
            return resp
        self.completed += 1
        return resp


def _capped(scripted: FakeResponse, body: dict[str, Any], *, chat: bool) -> FakeResponse:
    """The answer cut at the request's output cap, as OpenAI cuts it: the text stops there and the
    finish reason is ``length`` (chat) or the response is ``incomplete`` (Responses)."""
    keys = ("max_completion_tokens", "max_tokens") if chat else ("max_output_tokens",)
    cap = next((body[k] for k in keys if isinstance(body.get(k), int) and not isinstance(body[k], bool)), None)
    if cap is None or len(scripted.tokens) <= cap or scripted.tool_calls:
        return scripted
    return dataclasses.replace(scripted, tokens=scripted.tokens[:cap], finish="length")


async def _serve_forever(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        api_key=args.api_key,
        ttft=args.ttft_ms / 1000.0,
        token_delay=args.token_delay_ms / 1000.0,
        default_tokens=args.tokens,
        models=(),
    )
    await fake.start(port=args.port, host=args.host)
    print(f"fake OpenAI listening on {fake.base_url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    """Serve the default answer to every request until interrupted."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible upstream (SSE)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--api-key", default="", help="require this key (empty: accept any)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
