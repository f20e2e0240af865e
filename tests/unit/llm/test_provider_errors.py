"""The shared upstream-error mapper (pure functions)."""

from __future__ import annotations

import json

from services.common.errors import ErrorClass
from services.common.upstream_replies import parse_retry_after, redact_secrets
from services.llm.providers.errors import provider_error_from_exception, provider_error_from_response


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def test_retry_after_accepts_seconds_milliseconds_and_http_dates():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=1445412500.0) == 10.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_rate_limit_is_retryable_with_retry_after():
    err = provider_error_from_response(429, {"Retry-After": "3"}, _body("rate_limit_exceeded", "slow"), "OpenAI")
    assert err.retryable and err.retry_after == 3.0 and err.status == 429


def test_insufficient_quota_is_not_retryable_and_says_the_account_is_out_of_quota():
    err = provider_error_from_response(429, {"Retry-After": "3"}, _body("insufficient_quota", "pay up"), "OpenAI")
    assert not err.retryable
    assert err.error_class == ErrorClass.PROVIDER
    assert "out of quota" in err.message and err.code == "insufficient_quota"


def test_server_errors_are_retryable_and_auth_errors_are_not():
    assert provider_error_from_response(503, {}, b"upstream down", "X").retryable
    err = provider_error_from_response(401, {}, _body("invalid_api_key", "bad key sk-abcdef123456"), "X")
    assert not err.retryable
    assert err.message == "X rejected the API key; an admin must update the service"


def test_unknown_model_is_a_caller_error_quoting_the_provider():
    body = _body("model_not_found", "The model `gpt-9` does not exist")
    err = provider_error_from_response(404, {}, body, "OpenAI", secrets=("sk-secret-value",))
    assert err.error_class == ErrorClass.CALLER and err.code == "model_not_found"
    assert "The model `gpt-9` does not exist" in err.message


def test_unknown_model_is_recognised_from_a_plain_message():
    body = json.dumps({"object": "error", "message": "Invalid model: foo", "type": "invalid_model"}).encode()
    assert provider_error_from_response(400, {}, body, "Mistral").code == "model_not_found"


def test_keys_echoed_by_the_provider_are_scrubbed():
    body = _body("bad_request", "key sk-proj-AbCdEf0123456789 and mysecretkey987 are wrong")
    err = provider_error_from_response(400, {}, body, "X", secrets=("mysecretkey987",))
    assert "AbCdEf0123456789" not in err.message and "mysecretkey987" not in err.message
    assert redact_secrets("Bearer abcdefghijkl") == "Bearer [redacted]"


def test_connection_errors_are_retryable_with_status_zero():
    err = provider_error_from_exception(ConnectionRefusedError("http://host/?key=secret"), "Gemini")
    assert err.retryable and err.status == 0 and "secret" not in err.message
