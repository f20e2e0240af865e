"""Grouping texts into embeddings requests within the provider's caps on inputs and tokens."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.errors import InvalidInput

# OpenAI's embedding models (and Azure's deployments of them) refuse an input over 8191 tokens.
MAX_INPUT_TOKENS = 8191


def plan_batches(token_counts: Sequence[int], *, max_inputs: int, max_tokens: int) -> list[range]:
    """Consecutive index ranges, each within ``max_inputs`` texts and ``max_tokens`` tokens in all.

    A text over ``MAX_INPUT_TOKENS`` is refused rather than cut: the chunker keeps chunks under
    it, so only a query can be that long, and its caller should hear so.
    """
    batches: list[range] = []
    start, used = 0, 0
    for i, tokens in enumerate(token_counts):
        if tokens > min(MAX_INPUT_TOKENS, max_tokens):
            raise InvalidInput(
                f"a text of {tokens} tokens is over the embedding model's limit of "
                f"{min(MAX_INPUT_TOKENS, max_tokens)} tokens",
                field="input",
            )
        if i > start and (i - start >= max_inputs or used + tokens > max_tokens):
            batches.append(range(start, i))
            start, used = i, 0
        used += tokens
    if start < len(token_counts):
        batches.append(range(start, len(token_counts)))
    return batches
