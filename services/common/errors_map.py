"""The one error-mapping table: domain error → gRPC status → HTTP status, and back.

Servers map raised domain errors to a status plus trailing metadata (error class, the bad field,
Retry-After); clients turn a failed call back into the same domain error, so a NotFound raised
three hops away is still a NotFound for the gateway, which renders it as HTTP exactly once.
"""

from __future__ import annotations

import logging
import sys

import grpc

from services.common import errors

logger = logging.getLogger(__name__)

ERROR_CLASS_KEY = "x-agents-error-class"
ERROR_FIELD_KEY = "x-agents-error-field"
RETRY_AFTER_KEY = "retry-after"

# Most specific first: subclasses are listed before their parents.
_DOMAIN_TO_STATUS: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.UpstreamUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
]

_STATUS_TO_DOMAIN: dict[grpc.StatusCode, type[errors.DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.QuotaExceeded,
    grpc.StatusCode.UNAVAILABLE: errors.UpstreamUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.UpstreamUnavailable,
    grpc.StatusCode.CANCELLED: errors.UpstreamUnavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.Unimplemented,
}

STATUS_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}

INTERNAL_MESSAGE = "internal server error"

# What a caller is told for a status the gRPC runtime made up (peer down, deadline, transport):
# its details are debug strings naming internal addresses ("ipv4:10.0.0.5:50051: Connection
# refused") and go to the log only.
_RUNTIME_MESSAGES = {
    grpc.StatusCode.UNAVAILABLE: "a cluster service is unavailable; retry in a moment",
    grpc.StatusCode.CANCELLED: "a cluster service is unavailable; retry in a moment",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a cluster service did not answer in time; retry in a moment",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "a cluster service is overloaded; retry in a moment",
}

# A database that cannot be reached (down, restarting, refusing connections, or the pool
# exhausted) is a dependency being unavailable, not a bug: callers may retry. The driver's own
# message names the server's address, so the domain error says only what happened.
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; try again shortly"
DATABASE_RETRY_AFTER_SECONDS = 5.0


def domain_error_of(exc: BaseException) -> errors.DomainError | None:
    """The domain error ``exc`` stands for: itself, an infrastructure failure translated, or None
    (a bug: INTERNAL)."""
    if isinstance(exc, errors.DomainError):
        return exc
    # Imported only where already loaded: a process without a database (the gateway) then never
    # loads SQLAlchemy, half a CPU second at each start, and cannot have raised one of its errors.
    if "sqlalchemy.exc" not in sys.modules:
        return None
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    ):
        return errors.UpstreamUnavailable(DATABASE_UNAVAILABLE_MESSAGE, retry_after=DATABASE_RETRY_AFTER_SECONDS)
    return None


def status_for(error: errors.DomainError) -> grpc.StatusCode:
    """The gRPC status a server answers ``error`` with (a timeout is DEADLINE_EXCEEDED)."""
    if isinstance(error, errors.UpstreamUnavailable) and error.timeout:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    for cls, code in _DOMAIN_TO_STATUS:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def trailing_metadata_for(error: errors.DomainError) -> tuple[tuple[str, str], ...]:
    """What the status alone loses: the error class, the bad field, Retry-After."""
    md = [(ERROR_CLASS_KEY, str(error.error_class))]
    field = getattr(error, "field", "")
    if field:
        md.append((ERROR_FIELD_KEY, field))
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        md.append((RETRY_AFTER_KEY, str(max(1, round(retry_after)))))
    return tuple(md)


def domain_error_from_status(code: grpc.StatusCode, message: str, trailing: dict[str, str]) -> errors.DomainError:
    """Rebuild the domain error a remote service raised from its status and trailing metadata."""
    cls = _STATUS_TO_DOMAIN.get(code, errors.DomainError)
    if ERROR_CLASS_KEY not in trailing and message != INTERNAL_MESSAGE:
        # Not raised by a service (every domain error carries its class): the runtime's own status.
        logger.warning("gRPC call failed with %s: %s", code.name, message)
        message = _RUNTIME_MESSAGES.get(code, INTERNAL_MESSAGE)
    error_class = None
    if raw := trailing.get(ERROR_CLASS_KEY):
        try:
            error_class = errors.ErrorClass(raw)
        except ValueError:
            error_class = None
    retry_after = None
    if raw := trailing.get(RETRY_AFTER_KEY):
        try:
            retry_after = float(raw)
        except ValueError:
            retry_after = None
    message = message or INTERNAL_MESSAGE
    if cls is errors.InvalidInput:
        return errors.InvalidInput(message, field=trailing.get(ERROR_FIELD_KEY, ""), error_class=error_class)
    if cls is errors.UpstreamUnavailable:
        return errors.UpstreamUnavailable(
            message,
            retry_after=retry_after,
            timeout=code == grpc.StatusCode.DEADLINE_EXCEEDED,
            error_class=error_class,
        )
    if cls is errors.QuotaExceeded:
        return errors.QuotaExceeded(message, retry_after=retry_after, error_class=error_class)
    return cls(message, error_class=error_class)


def domain_error_from_rpc_error(err: grpc.aio.AioRpcError) -> errors.DomainError:
    """The domain error a failed outgoing call stands for (``domain_error_from_status``)."""
    trailing = {k: v for k, v in (err.trailing_metadata() or ()) if isinstance(v, str)}
    return domain_error_from_status(err.code(), err.details() or "", trailing)


def http_status_for(error: errors.DomainError) -> int:
    """The HTTP status the gateway answers ``error`` with, through its gRPC status."""
    return STATUS_TO_HTTP.get(status_for(error), 500)
