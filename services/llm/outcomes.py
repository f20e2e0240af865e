"""The llm service's one error table: a provider failure → the domain error the caller gets.

The shared interceptor then maps the domain error to a status code (``errors_map``), so this
table only decides *which* domain error a provider failure is:

| provider failure                         | domain error           | status              | class    |
|------------------------------------------|------------------------|---------------------|----------|
| unknown model / deployment               | FailedPrecondition     | FAILED_PRECONDITION | caller   |
| out of quota (``insufficient_quota``)    | QuotaExceeded          | RESOURCE_EXHAUSTED  | provider |
| key rejected (401/403)                   | FailedPrecondition     | FAILED_PRECONDITION | provider |
| other 4xx (the request was refused)      | InvalidInput           | INVALID_ARGUMENT    | caller   |
| 429 / 5xx / connection, retries used up | UpstreamUnavailable    | UNAVAILABLE         | provider |
| stalled before the first event           | UpstreamUnavailable(timeout) | DEADLINE_EXCEEDED | provider |

Every outcome carries one class of the closed set (caller/policy/provider/internal), which is
also the ``outcome`` label of ``agents_llm_requests_total`` and the span's error class. Messages
come from the provider layer, which already scrubbed keys and phrased what to do.
"""

from __future__ import annotations

from services.common.errors import (
    DomainError,
    ErrorClass,
    FailedPrecondition,
    InvalidInput,
    QuotaExceeded,
    UpstreamUnavailable,
)
from services.llm.providers.base import ProviderError, StreamError
from services.llm.streaming import STALLED

SUCCESS = "success"  # the outcome label of a call that ended without an error
OUTCOMES = (SUCCESS, *(str(c) for c in ErrorClass))

MODEL_HINT = "; pick a model the service offers in the agent or service settings"
INTERNAL_MESSAGE = "the LLM service failed unexpectedly; try again, and tell an admin if it keeps happening"


def domain_error_for(error: ProviderError) -> DomainError:
    """The domain error a provider failure surfaces as before the first event."""
    code = error.code
    if code == "model_not_found":
        return FailedPrecondition(error.message + MODEL_HINT, error_class=ErrorClass.CALLER)
    if code == "insufficient_quota":
        return QuotaExceeded(error.message, retry_after=error.retry_after, error_class=ErrorClass.PROVIDER)
    if error.status in (401, 403):
        return FailedPrecondition(error.message, error_class=ErrorClass.PROVIDER)
    if error.retryable:
        # 429 and 5xx reach here only once the engine's retries are used up.
        return UpstreamUnavailable(error.message, retry_after=error.retry_after, error_class=ErrorClass.PROVIDER)
    if 400 <= error.status < 500:
        return InvalidInput(error.message, error_class=error.error_class)
    return UpstreamUnavailable(error.message, error_class=error.error_class)


def domain_error_for_stream_error(event: StreamError) -> DomainError:
    """A stream that failed before its first real event (the watchdog or an in-band error)."""
    if event.code == STALLED:
        return UpstreamUnavailable(event.message, timeout=True, error_class=event.error_class)
    if event.code == "insufficient_quota":
        return QuotaExceeded(event.message, error_class=event.error_class)
    return UpstreamUnavailable(event.message, error_class=event.error_class)


def outcome_of(error: BaseException | None) -> str:
    """The metric label of a call: ``success`` or the error's class."""
    if error is None:
        return SUCCESS
    if isinstance(error, DomainError):
        return str(error.error_class)
    return str(ErrorClass.INTERNAL)
