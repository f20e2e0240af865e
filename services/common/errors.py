"""Typed domain errors shared by every service.

Domain code raises these; one gRPC interceptor maps them to status codes, one client wrapper maps
status codes back, and the gateway maps status codes to HTTP. Each error also carries an
``ErrorClass`` so users, metrics and spans see the same closed set of causes.
"""

from __future__ import annotations

import enum


class ErrorClass(enum.StrEnum):
    """Who has to act on an error: the caller, an admin's policy, the upstream provider, or us."""

    CALLER = "caller"
    POLICY = "policy"
    PROVIDER = "provider"
    INTERNAL = "internal"


class DomainError(Exception):
    """Base of every error domain code raises on purpose. ``message`` is safe to show a user."""

    default_class = ErrorClass.INTERNAL

    def __init__(self, message: str, *, error_class: ErrorClass | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_class = error_class or self.default_class


class InvalidInput(DomainError):
    """The request is malformed or names a field with a bad value."""

    default_class = ErrorClass.CALLER

    def __init__(self, message: str, *, field: str = "", error_class: ErrorClass | None = None) -> None:
        super().__init__(message, error_class=error_class)
        self.field = field


class NotFound(DomainError):
    """The named resource (an agent, a conversation, a post) does not exist."""

    default_class = ErrorClass.CALLER


class PermissionDenied(DomainError):
    """The caller is known but a permission or an admin's policy forbids the request."""

    default_class = ErrorClass.POLICY


class Unauthenticated(DomainError):
    """The caller presented no valid credential (a user session, a token, the service credential)."""

    default_class = ErrorClass.CALLER


class Conflict(DomainError):
    """The request collides with the current state (a concurrent edit, a resource still in use)."""

    default_class = ErrorClass.CALLER


class AlreadyExists(Conflict):
    """Something with the same unique key (a username, an id) exists."""


class FailedPrecondition(DomainError):
    """The request is well formed but the system is not in a state to serve it (e.g. unknown model)."""

    default_class = ErrorClass.CALLER


class QuotaExceeded(DomainError):
    """A rate limit or usage quota is spent; ``retry_after`` seconds, when known, until it refills."""

    default_class = ErrorClass.POLICY

    def __init__(
        self, message: str, *, retry_after: float | None = None, error_class: ErrorClass | None = None
    ) -> None:
        super().__init__(message, error_class=error_class)
        self.retry_after = retry_after


class UpstreamUnavailable(DomainError):
    """A dependency (database, provider, another service) cannot be reached or timed out."""

    default_class = ErrorClass.PROVIDER

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        timeout: bool = False,
        error_class: ErrorClass | None = None,
    ) -> None:
        super().__init__(message, error_class=error_class)
        self.retry_after = retry_after
        self.timeout = timeout


class Unimplemented(DomainError):
    """The operation exists in the API but its feature has not landed in this release."""

    default_class = ErrorClass.INTERNAL
