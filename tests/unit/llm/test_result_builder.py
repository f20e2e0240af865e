from __future__ import annotations

from services.llm.providers.base import (
    Annotation,
    Done,
    ReasoningDelta,
    StopReason,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
)
from services.llm.streaming import ResultBuilder


def test_a_gathered_result_joins_text_and_keeps_every_other_event() -> None:
    builder = ResultBuilder()
    call = ToolCall(id="c1", name="search", raw_arguments="{}", arguments={})
    for event in (
        ReasoningDelta("think "),
        ReasoningDelta("more", signature="sig-1"),
        TextDelta("Hello "),
        TextDelta("world"),
        ToolCallEvent(call),
        Annotation(url="https://example.org", title="Example"),
        Usage(input_tokens=3, output_tokens=2),
        Done(StopReason.TOOL_USE),
    ):
        builder.add(event)
    result = builder.finish()
    assert (result.text, result.reasoning, result.reasoning_signature) == ("Hello world", "think more", "sig-1")
    assert result.tool_calls == [call]
    assert [a.url for a in result.annotations] == ["https://example.org"]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 2)
    assert result.stop_reason == StopReason.TOOL_USE


def test_redacted_reasoning_is_never_gathered_as_readable_text() -> None:
    builder = ResultBuilder()
    builder.add(ReasoningDelta("visible"))
    builder.add(ReasoningDelta("ENCRYPTED-BLOB", signature="sig", redacted=True))
    result = builder.finish()
    assert result.reasoning == "visible"
    assert result.reasoning_signature == "sig"
