"""The structured output fallback's fence stripping, fed in chunks as the bridge streams text."""

from __future__ import annotations

import pytest

from services.gateway.bridge.events import FenceStripper


def stripped(chunks: list[str]) -> str:
    fences = FenceStripper()
    return "".join(fences.feed(c) for c in chunks) + fences.finish()


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        (["``", "`json\n{", '"a": 1}\n`', "``"], '{"a": 1}'),
        (["```\n[1, 2]", "\n```\n"], "[1, 2]"),
        (['{"code": "`x`"}'], '{"code": "`x`"}'),  # no fence: untouched, backticks inside kept
        ([" ", '{"a": "b`', '`"}'], ' {"a": "b``"}'),
        (["``"], "``"),  # ended before anything decided: given back as it came
    ],
)
def test_a_fence_around_json_is_removed_whatever_the_chunking(chunks: list[str], expected: str) -> None:
    assert stripped(chunks) == expected
