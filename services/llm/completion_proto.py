"""Translation between the ``agents.llm.v1`` completion messages (requests, events, results), the
registry's service configs and the domain types.

The servicers and the registry client use this; the domain modules never see a protobuf. Event
conversion is on the hot path (one call per streamed token), so it builds messages directly
instead of going through generic JSON conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.common.v1 import common_pb2 as common_pb2
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from google.protobuf import json_format, struct_pb2

from services.common.errors import ErrorClass, InvalidInput
from services.llm.completion import Attribution
from services.llm.providers import base
from services.llm.streaming import CompletionResult

_ROLES = {
    llm_pb2.ROLE_SYSTEM: base.Role.SYSTEM,
    llm_pb2.ROLE_USER: base.Role.USER,
    llm_pb2.ROLE_ASSISTANT: base.Role.ASSISTANT,
    llm_pb2.ROLE_TOOL: base.Role.TOOL,
}
_STOP_REASONS = {
    base.StopReason.END_TURN: llm_pb2.STOP_REASON_END_TURN,
    base.StopReason.TOOL_USE: llm_pb2.STOP_REASON_TOOL_USE,
    base.StopReason.MAX_TOKENS: llm_pb2.STOP_REASON_MAX_TOKENS,
    base.StopReason.STOPPED: llm_pb2.STOP_REASON_STOPPED,
    base.StopReason.ERROR: llm_pb2.STOP_REASON_ERROR,
    base.StopReason.CONTENT_FILTER: llm_pb2.STOP_REASON_CONTENT_FILTER,
}
ERROR_CLASSES = {
    ErrorClass.CALLER: common_pb2.ERROR_CLASS_CALLER,
    ErrorClass.POLICY: common_pb2.ERROR_CLASS_POLICY,
    ErrorClass.PROVIDER: common_pb2.ERROR_CLASS_PROVIDER,
    ErrorClass.INTERNAL: common_pb2.ERROR_CLASS_INTERNAL,
}


# ---- requests -------------------------------------------------------------------------------


def _struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def _tool_call(call: llm_pb2.ToolCall) -> base.ToolCall:
    arguments = _struct_to_dict(call.arguments) if call.HasField("arguments") else None
    return base.ToolCall(
        id=call.id, name=call.name, raw_arguments=call.raw_arguments, arguments=arguments, valid=call.valid
    )


def _part(part: llm_pb2.Part) -> base.Part:
    kind = part.WhichOneof("kind")
    if kind == "text":
        return base.TextPart(part.text)
    if kind == "image":
        return base.ImagePart(part.image.mime_type, part.image.data)
    if kind == "reasoning":
        r = part.reasoning
        return base.ReasoningPart(r.text, signature=r.signature, redacted=r.redacted)
    if kind == "tool_call":
        return _tool_call(part.tool_call)
    if kind == "tool_result":
        t = part.tool_result
        return base.ToolResult(t.tool_call_id, t.name, t.content, is_error=t.is_error)
    raise InvalidInput("a message part has no content", field="messages")


def completion_request_from_proto(pb: llm_pb2.CompletionRequest) -> tuple[str, base.CompletionRequest, Attribution]:
    """(service id, the neutral request, who and what it is for). INVALID_ARGUMENT on bad input."""
    if not pb.service_id:
        raise InvalidInput("service_id is required", field="service_id")
    if not pb.messages:
        raise InvalidInput("at least one message is required", field="messages")
    messages = []
    for message in pb.messages:
        role = _ROLES.get(message.role)
        if role is None:
            raise InvalidInput("every message needs a role", field="messages")
        messages.append(base.Message(role=role, parts=tuple(_part(p) for p in message.parts)))
    reasoning = base.ReasoningOptions()
    if pb.HasField("reasoning") and pb.reasoning.enabled:
        try:
            effort = base.ReasoningEffort(pb.reasoning.effort or "medium")
        except ValueError:
            raise InvalidInput(f"unknown reasoning effort {pb.reasoning.effort!r}", field="reasoning.effort") from None
        reasoning = base.ReasoningOptions(enabled=True, effort=effort, budget_tokens=pb.reasoning.budget_tokens)
    if pb.max_output_tokens < 0:
        raise InvalidInput("max_output_tokens must not be negative", field="max_output_tokens")
    operation = pb.operation or "conversation"
    request = base.CompletionRequest(
        messages=tuple(messages),
        model=pb.model,
        tools=tuple(
            base.ToolSpec(t.name, t.description, _struct_to_dict(t.input_schema))
            if t.HasField("input_schema")
            else base.ToolSpec(t.name, t.description)
            for t in pb.tools
        ),
        reasoning=reasoning,
        json_schema=_struct_to_dict(pb.json_schema) if pb.HasField("json_schema") else None,
        max_output_tokens=pb.max_output_tokens,
        native_web_search=pb.native_web_search,
        user_id=pb.user_id,
        operation=operation,
    )
    attribution = Attribution(
        user_id=pb.user_id, team_id=pb.team_id, agent_username=pb.agent_username, operation=operation
    )
    return pb.service_id, request, attribution


# ---- events ---------------------------------------------------------------------------------


def tool_call_to_proto(call: base.ToolCall) -> llm_pb2.ToolCall:
    """A neutral tool call as its proto, arguments as a Struct when they parsed."""
    pb = llm_pb2.ToolCall(id=call.id, name=call.name, raw_arguments=call.raw_arguments, valid=call.valid)
    if call.arguments is not None:
        pb.arguments.update(call.arguments)
    return pb


def _usage_to_proto(usage: base.Usage) -> llm_pb2.Usage:
    return llm_pb2.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_read_tokens=usage.cached_read_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def events_to_proto(events: Sequence[base.Event]) -> llm_pb2.StreamCompleteResponse:
    """Neutral events as one stream message (``coalescing.coalesced`` decides which go together)."""
    message = llm_pb2.StreamCompleteResponse()
    out = message.events
    for event in events:
        if type(event) is base.TextDelta:
            # Most events are text: filling a submessage in place is ~3x cheaper than nesting
            # constructors, and this runs once per token.
            out.add().text_delta.text = event.text
        else:
            out.append(stream_event(event))
    return message


def stream_event(event: base.Event) -> llm_pb2.StreamEvent:
    """One neutral event as its proto."""
    if isinstance(event, base.TextDelta):
        return llm_pb2.StreamEvent(text_delta=llm_pb2.TextDelta(text=event.text))
    if isinstance(event, base.ReasoningDelta):
        return llm_pb2.StreamEvent(reasoning_delta=llm_pb2.ReasoningDelta(text=event.text, signature=event.signature))
    if isinstance(event, base.ToolCallEvent):
        return llm_pb2.StreamEvent(tool_call=tool_call_to_proto(event.call))
    if isinstance(event, base.Annotation):
        return llm_pb2.StreamEvent(
            annotation=llm_pb2.Annotation(
                url=event.url, title=event.title, start_index=event.start_index, end_index=event.end_index
            )
        )
    if isinstance(event, base.Usage):
        return llm_pb2.StreamEvent(usage=_usage_to_proto(event))
    if isinstance(event, base.StreamError):
        return llm_pb2.StreamEvent(
            error=llm_pb2.StreamError(error_class=ERROR_CLASSES[event.error_class], message=event.message)
        )
    return llm_pb2.StreamEvent(done=llm_pb2.Done(stop_reason=_STOP_REASONS[event.stop_reason]))


def result_to_proto(result: CompletionResult, model: str) -> llm_pb2.CompleteResponse:
    """A gathered completion as the Complete RPC's response, naming the model that answered."""
    reasoning = []
    if result.reasoning or result.reasoning_signature:
        reasoning.append(llm_pb2.ReasoningPart(text=result.reasoning, signature=result.reasoning_signature))
    return llm_pb2.CompleteResponse(
        text=result.text,
        reasoning=reasoning,
        tool_calls=[tool_call_to_proto(c) for c in result.tool_calls],
        annotations=[
            llm_pb2.Annotation(url=a.url, title=a.title, start_index=a.start_index, end_index=a.end_index)
            for a in result.annotations
        ],
        usage=_usage_to_proto(result.usage),
        stop_reason=_STOP_REASONS[result.stop_reason],
        model=model,
    )


# ---- services -------------------------------------------------------------------------------


def _service_type(raw: str) -> base.ServiceType:
    try:
        return base.ServiceType(raw)
    except ValueError:
        raise InvalidInput(f"service type {raw!r} is not supported", field="type") from None


def service_settings_from_proto(pb: registry_pb2.ServiceConfig) -> base.ServiceSettings:
    """A registry service (secrets in clear) as provider settings."""
    return base.ServiceSettings(
        id=pb.id,
        type=_service_type(pb.type),
        name=pb.name,
        api_key=pb.api_key,
        api_url=pb.api_url,
        org_id=pb.org_id,
        default_model=pb.default_model,
        input_token_limit=pb.token_limit,
        output_token_limit=pb.output_token_limit,
        streaming_timeout_seconds=pb.streaming_timeout_seconds or 300,
        send_user_id=pb.send_user_id,
        use_responses_api=pb.use_responses_api,
        region=pb.region,
        aws_access_key_id=pb.aws_access_key_id,
        aws_secret_access_key=pb.aws_secret_access_key,
        account_id=pb.account_id,
        vertex_project_id=pb.vertex_project_id,
        vertex_auth_credentials=pb.vertex_auth_credentials,
        fallback_service_id=pb.fallback_service_id,
    )


def inline_credentials_to_settings(pb: llm_pb2.ServiceCredentials) -> base.ServiceSettings:
    """Unsaved credentials (the admin's "fetch models") as provider settings with no id."""
    return base.ServiceSettings(
        id="",
        type=_service_type(pb.type),
        api_key=pb.api_key,
        api_url=pb.api_url,
        org_id=pb.org_id,
        region=pb.region,
        vertex_project_id=pb.vertex_project_id,
        vertex_auth_credentials=pb.vertex_auth_credentials,
    )
