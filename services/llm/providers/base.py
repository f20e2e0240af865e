"""The one provider interface: a normalised request in, a normalised event stream out.

Everything provider-specific (wire formats, auth, quirks) lives in the modules beside this one.
The rest of the service sees only these types. Nothing here imports gRPC or aiohttp.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from services.common.errors import DomainError, ErrorClass


class ServiceType(enum.StrEnum):
    """The provider a service speaks to, as the plugin's service ``type`` spells it."""

    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openaicompatible"
    AZURE = "azure"
    ANTHROPIC = "anthropic"
    BEDROCK = "bedrock"
    COHERE = "cohere"
    MISTRAL = "mistral"
    SCALE = "scale"
    ASAGE = "asage"
    GEMINI = "gemini"
    VERTEX = "vertex"


@dataclass(frozen=True)
class ServiceSettings:
    """An admin-configured LLM service (the admin guide's "Services"), secrets included."""

    id: str
    type: ServiceType
    name: str = ""
    api_key: str = ""
    api_url: str = ""
    org_id: str = ""
    default_model: str = ""
    input_token_limit: int = 0  # 0: no client-side trimming
    output_token_limit: int = 0  # 0: provider default (8192)
    streaming_timeout_seconds: int = 300
    send_user_id: bool = False
    use_responses_api: bool = False
    region: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: str = ""
    account_id: str = ""
    vertex_project_id: str = ""
    vertex_auth_credentials: str = ""
    fallback_service_id: str = ""  # tried when this service fails before answering; "" for none


class Role(enum.StrEnum):
    """Who wrote a message in the conversation."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True)
class TextPart:
    """Plain text in a message."""

    text: str


@dataclass(frozen=True)
class ImagePart:
    """An image attached to a message (raw bytes, sent inline)."""

    mime_type: str
    data: bytes


@dataclass(frozen=True)
class ReasoningPart:
    """Model reasoning; ``signature`` must be sent back verbatim to providers that sign it."""

    text: str
    signature: str = ""
    redacted: bool = False


@dataclass(frozen=True)
class ToolCall:
    """A tool call proposed by the model. ``valid`` is false when ``raw_arguments`` is not a JSON object."""

    id: str
    name: str
    raw_arguments: str
    arguments: dict[str, Any] | None = None
    valid: bool = True


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned for the model's call ``tool_call_id``; ``is_error`` when it failed."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False


Part = TextPart | ImagePart | ReasoningPart | ToolCall | ToolResult


@dataclass(frozen=True)
class Message:
    """One turn of the conversation sent to the model."""

    role: Role
    parts: tuple[Part, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        """A message of one text part."""
        return cls(role=role, parts=(TextPart(text),))


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call, with the JSON Schema of its arguments."""

    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


class ReasoningEffort(enum.StrEnum):
    """How hard a reasoning model thinks, for providers with an effort setting."""

    MINIMAL = "minimal"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ReasoningOptions:
    """Whether the model reasons before answering, and how much."""

    enabled: bool = False
    effort: ReasoningEffort = ReasoningEffort.MEDIUM
    budget_tokens: int = 0  # 0: provider default (e.g. Anthropic: output limit / 4 within [1024, 8192])


@dataclass(frozen=True)
class CompletionRequest:
    """A provider-neutral request. ``model`` empty means the service's default model."""

    messages: tuple[Message, ...]
    model: str = ""
    tools: tuple[ToolSpec, ...] = ()
    reasoning: ReasoningOptions = ReasoningOptions()
    json_schema: dict[str, Any] | None = None  # structured output
    max_output_tokens: int = 0
    native_web_search: bool = False
    user_id: str = ""  # sent upstream only when the service's send_user_id is on
    operation: str = "conversation"


# ---- the normalised event stream -------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the answer's text."""

    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """The next piece of the model's reasoning, or its signature once the block ends."""

    text: str
    signature: str = ""
    redacted: bool = False  # ``text`` is an opaque encrypted block to send back verbatim


@dataclass(frozen=True)
class ToolCallEvent:
    """A complete tool call: emitted once its arguments have all arrived."""

    call: ToolCall


@dataclass(frozen=True)
class Annotation:
    """A citation attached to the answer (native web search, grounding)."""

    url: str
    title: str = ""
    start_index: int = 0
    end_index: int = 0


@dataclass(frozen=True)
class Usage:
    """Tokens the upstream reports for the attempt."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_read_tokens: int = 0
    reasoning_tokens: int = 0


class StopReason(enum.StrEnum):
    """Why the model stopped answering."""

    END_TURN = "end_turn"
    TOOL_USE = "tool_use"
    MAX_TOKENS = "max_tokens"
    STOPPED = "stopped"  # the caller stopped the stream
    ERROR = "error"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True)
class StreamError:
    """Ends a stream that failed after it started; the text already sent is kept by consumers."""

    error_class: ErrorClass
    message: str  # safe to show a user: says what to do, never contains a secret
    retryable: bool = False
    # Machine-readable cause ("stalled": the engine's watchdog; else the provider's code); not part of equality.
    code: str = field(default="", compare=False)


@dataclass(frozen=True)
class Done:
    """Ends a stream that finished; nothing follows it."""

    stop_reason: StopReason = StopReason.END_TURN


Event = TextDelta | ReasoningDelta | ToolCallEvent | Annotation | Usage | StreamError | Done


class ProviderError(DomainError):
    """An upstream failure before or during a stream.

    ``status`` is the upstream HTTP status (0 for connection errors and stalls). ``retryable`` is
    true for 429/5xx/connection errors, which the streaming engine retries only before the first
    token; quota errors (``insufficient_quota``) are never retryable.
    """

    default_class = ErrorClass.PROVIDER

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        retryable: bool = False,
        retry_after: float | None = None,
        error_class: ErrorClass | None = None,
        code: str = "",
    ) -> None:
        super().__init__(message, error_class=error_class)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.code = code


class Provider(Protocol):
    """One configured service. Implementations make exactly one upstream attempt per call;
    retries, the stall watchdog and token trimming live in the streaming engine."""

    settings: ServiceSettings

    def stream(self, request: CompletionRequest) -> AsyncIterator[Event]:
        """Yield normalised events for one upstream attempt; raise ``ProviderError`` before the
        first event when the upstream refuses the request."""
        ...

    async def list_models(self) -> list[str]:
        """Model ids the upstream offers with the stored credentials."""
        ...

    async def aclose(self) -> None:
        """Release what the provider holds (the built-in ones hold nothing: the session they
        stream on is the caller's)."""
        ...
