"""Argument validation against the built-in tools' schemas."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.tools.catalog import require_tool, validate_arguments


def test_unknown_tool_is_invalid_input_naming_tool_name() -> None:
    with pytest.raises(InvalidInput) as err:
        require_tool("rm_rf")
    assert err.value.field == "tool_name"


def test_missing_required_argument_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_arguments(require_tool("read_post"), {})
    assert err.value.field == "arguments.post_id"


def test_unknown_argument_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_arguments(require_tool("read_post"), {"post_id": "p", "as_user": "admin"})


def test_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_arguments(require_tool("read_channel"), {"channel_id": "c", "limit": "20"})


def test_integer_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_arguments(require_tool("read_channel"), {"channel_id": "c", "limit": 1000})


def test_whole_floats_from_struct_become_ints() -> None:
    # google.protobuf.Struct carries every number as a double.
    args = validate_arguments(require_tool("read_channel"), {"channel_id": "c", "limit": 5.0})
    assert args["limit"] == 5 and isinstance(args["limit"], int)


def test_too_short_search_query_is_refused() -> None:
    with pytest.raises(InvalidInput):
        validate_arguments(require_tool("web_search"), {"query": "ab"})
