"""The llm error table: provider failure → domain error → status, class and message."""

from __future__ import annotations

import grpc
import pytest

from services.common.errors import ErrorClass, QuotaExceeded, UpstreamUnavailable
from services.common.errors_map import status_for
from services.llm import outcomes
from services.llm.providers.base import StreamError
from services.llm.providers.errors import provider_error_from_response
from services.llm.streaming import STALLED

UNKNOWN_MODEL_BODY = (
    b'{"error": {"message": "The model `gpt-9` does not exist or you do not have access to it.",'
    b' "type": "invalid_request_error", "code": "model_not_found"}}'
)
QUOTA_BODY = b'{"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}'


@pytest.mark.parametrize(
    ("status", "body", "code", "error_class"),
    [
        (404, UNKNOWN_MODEL_BODY, grpc.StatusCode.FAILED_PRECONDITION, ErrorClass.CALLER),
        (429, QUOTA_BODY, grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorClass.PROVIDER),
        (
            429,
            b'{"error": {"message": "slow down", "code": "rate_limit_exceeded"}}',
            grpc.StatusCode.UNAVAILABLE,
            ErrorClass.PROVIDER,
        ),
        (503, b"upstream overloaded", grpc.StatusCode.UNAVAILABLE, ErrorClass.PROVIDER),
        (401, b'{"error": {"message": "bad key"}}', grpc.StatusCode.FAILED_PRECONDITION, ErrorClass.PROVIDER),
        (
            400,
            b'{"error": {"message": "messages must not be empty"}}',
            grpc.StatusCode.INVALID_ARGUMENT,
            ErrorClass.CALLER,
        ),
    ],
    ids=["unknown_model", "quota", "rate_limited", "server_error", "bad_key", "bad_request"],
)
def test_provider_failures_map_to_one_status_and_class(status, body, code, error_class) -> None:
    failure = provider_error_from_response(status, {}, body, "OpenAI")
    error = outcomes.domain_error_for(failure)
    assert status_for(error) == code
    assert error.error_class == error_class
    assert outcomes.outcome_of(error) == str(error_class)


def test_unknown_model_keeps_the_providers_message_and_says_what_to_do() -> None:
    failure = provider_error_from_response(404, {}, UNKNOWN_MODEL_BODY, "OpenAI")
    error = outcomes.domain_error_for(failure)
    assert "The model `gpt-9` does not exist" in error.message
    assert "pick a model" in error.message


def test_a_stall_before_the_first_event_is_a_deadline_exceeded() -> None:
    stalled = StreamError(ErrorClass.PROVIDER, "the model stopped responding for 1 s; try again", code=STALLED)
    error = outcomes.domain_error_for_stream_error(stalled)
    assert isinstance(error, UpstreamUnavailable) and error.timeout
    assert status_for(error) == grpc.StatusCode.DEADLINE_EXCEEDED


def test_an_in_band_quota_error_before_the_first_event_is_resource_exhausted() -> None:
    quota = StreamError(ErrorClass.PROVIDER, "out of quota", code="insufficient_quota")
    assert isinstance(outcomes.domain_error_for_stream_error(quota), QuotaExceeded)


def test_an_unexpected_exception_is_counted_as_internal() -> None:
    assert outcomes.outcome_of(RuntimeError("boom")) == "internal"
    assert outcomes.outcome_of(None) == "success"


def test_the_outcome_labels_are_success_plus_the_closed_class_set() -> None:
    assert set(outcomes.OUTCOMES) == {"success", "caller", "policy", "provider", "internal"}


def test_the_provider_key_never_reaches_the_mapped_message() -> None:
    key = "sk-live-0123456789abcdef"
    body = b'{"error": {"message": "Incorrect API key provided: ' + key.encode() + b'"}}'
    failure = provider_error_from_response(400, {}, body, "OpenAI", secrets=(key,))
    assert key not in outcomes.domain_error_for(failure).message
