"""The LLM Trace's records of provider requests, as the llm service's JSON log writes them: what
went on the wire, with every credential redacted, against a real loopback upstream."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web

from services.common.http import new_client_session
from services.common.telemetry import JsonFormatter
from services.llm.provider_trace import ProviderTrace, redacted_body, redacted_headers

KEY = "sk-proj-trace0123456789abcdef"
GOOGLE_KEY = "AIzaSyTrace0123456789abcdefghij"


async def _answer(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True}, headers={"Set-Cookie": "session=s3cr3t-cookie-value"})


async def _traced_post(trace: ProviderTrace, caplog: pytest.LogCaptureFixture, body: Any) -> list[dict[str, Any]]:
    app = web.Application()
    app.add_routes([web.post("/v1beta/models/gemini:streamGenerateContent", _answer)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    # The service logs at WARNING: the trace is written all the same.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        async with new_client_session(trust_env=False, middlewares=(trace,)) as session:
            url = f"http://127.0.0.1:{port}/v1beta/models/gemini:streamGenerateContent?alt=sse&key={GOOGLE_KEY}"
            headers = {"Authorization": f"Bearer {KEY}", "x-goog-api-key": GOOGLE_KEY}
            async with session.post(url, json=body, headers=headers) as response:
                await response.read()
    finally:
        root.setLevel(level)
        trace.enabled = False
        await runner.cleanup()
    formatter = JsonFormatter("llm")
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "services.llm.provider_trace"]


async def test_a_traced_request_logs_its_body_and_its_answer_with_every_key_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trace = ProviderTrace()
    trace.enabled = True
    body = {
        "contents": [{"role": "user", "parts": [{"text": f"my key is {KEY}, keep it"}]}],
        "generationConfig": {"maxOutputTokens": 512},
        "api_key": "inline-secret-value",
    }
    request, response = await _traced_post(trace, caplog, body)
    assert request["llm_trace"] == "request" and request["method"] == "POST"
    assert "alt=sse" in request["url"] and "key=REDACTED" in request["url"]
    headers = json.loads(request["headers"])
    assert headers["Authorization"] == "REDACTED" and headers["x-goog-api-key"] == "REDACTED"
    sent = json.loads(request["body"])
    assert sent["generationConfig"] == {"maxOutputTokens": 512}
    assert sent["api_key"] == "REDACTED"
    assert sent["contents"][0]["parts"][0]["text"] == "my key is [redacted], keep it"
    assert response["llm_trace"] == "response" and response["status"] == 200
    assert json.loads(response["headers"])["Set-Cookie"] == "REDACTED"
    lines = json.dumps([request, response])
    for secret in (KEY, GOOGLE_KEY, "inline-secret-value", "s3cr3t-cookie-value"):
        assert secret not in lines


async def test_nothing_is_logged_while_the_trace_is_off(caplog: pytest.LogCaptureFixture) -> None:
    assert await _traced_post(ProviderTrace(), caplog, {"contents": []}) == []


def test_token_counts_stay_readable_while_credential_keys_are_redacted() -> None:
    body = {"max_tokens": 100, "usage": {"input_tokens": 3}, "client_secret": "x", "nested": [{"accessToken": "y"}]}
    assert redacted_body(body) == {
        "max_tokens": 100,
        "usage": {"input_tokens": 3},
        "client_secret": "REDACTED",
        "nested": [{"accessToken": "REDACTED"}],
    }
    headers = {"Content-Type": "application/json", "api-key": "k", "X-Amz-Security-Token": "t", "Cookie": "c"}
    assert redacted_headers(headers) == {
        "Content-Type": "application/json",
        "api-key": "REDACTED",
        "X-Amz-Security-Token": "REDACTED",
        "Cookie": "REDACTED",
    }
