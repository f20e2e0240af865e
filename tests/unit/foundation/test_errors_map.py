from __future__ import annotations

import grpc
import psycopg
import pytest
from sqlalchemy import exc as sa_exc

from services.common import errors
from services.common.errors_map import (
    STATUS_TO_HTTP,
    domain_error_from_status,
    domain_error_of,
    http_status_for,
    status_for,
    trailing_metadata_for,
)

CASES = [
    (errors.InvalidInput("bad", field="name"), grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED, 401),
    (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.NotFound("gone"), grpc.StatusCode.NOT_FOUND, 404),
    (errors.AlreadyExists("taken"), grpc.StatusCode.ALREADY_EXISTS, 409),
    (errors.Conflict("edited meanwhile"), grpc.StatusCode.ABORTED, 409),
    (errors.QuotaExceeded("slow down", retry_after=7), grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.UpstreamUnavailable("down", retry_after=3), grpc.StatusCode.UNAVAILABLE, 503),
    (errors.UpstreamUnavailable("slow", timeout=True), grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (errors.Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED, 501),
]


@pytest.mark.parametrize(("error", "code", "http"), CASES, ids=lambda v: type(v).__name__)
def test_each_domain_error_maps_to_its_status_and_http_code(error, code, http) -> None:
    assert status_for(error) == code
    assert http_status_for(error) == http
    assert STATUS_TO_HTTP[code] == http


@pytest.mark.parametrize(("error", "code", "http"), CASES, ids=lambda v: type(v).__name__)
def test_a_domain_error_survives_the_round_trip_through_a_status(error, code, http) -> None:
    trailing = dict(trailing_metadata_for(error))
    rebuilt = domain_error_from_status(code, error.message, trailing)
    assert type(rebuilt) is type(error)
    assert rebuilt.message == error.message
    assert rebuilt.error_class == error.error_class
    assert getattr(rebuilt, "field", "") == getattr(error, "field", "")
    if getattr(error, "retry_after", None):
        assert rebuilt.retry_after == error.retry_after


def test_an_unknown_status_becomes_a_generic_internal_error() -> None:
    rebuilt = domain_error_from_status(grpc.StatusCode.DATA_LOSS, "", {})
    assert type(rebuilt) is errors.DomainError
    assert rebuilt.message == "internal server error"
    assert STATUS_TO_HTTP.get(grpc.StatusCode.DATA_LOSS, 500) == 500


RUNTIME_DETAILS = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.5:50051: Connection refused"


@pytest.mark.parametrize(
    ("code", "cls", "says"),
    [
        (grpc.StatusCode.UNAVAILABLE, errors.UpstreamUnavailable, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, errors.UpstreamUnavailable, "in time"),
        (grpc.StatusCode.UNKNOWN, errors.DomainError, "internal server error"),
    ],
)
def test_a_status_the_grpc_runtime_made_up_keeps_its_debug_details_from_the_caller(code, cls, says) -> None:
    rebuilt = domain_error_from_status(code, RUNTIME_DETAILS, {})
    assert type(rebuilt) is cls
    assert says in rebuilt.message
    assert "10.0.0.5" not in rebuilt.message and "refused" not in rebuilt.message


def test_a_service_raised_unavailable_keeps_its_message() -> None:
    error = errors.UpstreamUnavailable("the OpenAI service is unavailable")
    rebuilt = domain_error_from_status(grpc.StatusCode.UNAVAILABLE, error.message, dict(trailing_metadata_for(error)))
    assert rebuilt.message == error.message


def test_an_unreachable_database_is_unavailable_with_retry_after_and_no_address() -> None:
    driver = psycopg.OperationalError('connection failed: connection to server on socket "/tmp/pg/.s.PGSQL.5432"')
    error = domain_error_of(sa_exc.OperationalError("select 1", {}, driver))
    assert isinstance(error, errors.UpstreamUnavailable) and error.retry_after
    assert status_for(error) == grpc.StatusCode.UNAVAILABLE and "/tmp/pg" not in error.message


def test_other_database_errors_stay_internal() -> None:
    assert domain_error_of(sa_exc.IntegrityError("insert", {}, Exception("duplicate key"))) is None
