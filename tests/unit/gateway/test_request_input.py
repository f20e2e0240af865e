"""What a JSON request body may hold: nesting the protobuf decoder survives, text PostgreSQL can
store, integers a 64-bit field holds; each refusal names where in the body it is."""

from __future__ import annotations

import json

import pytest
from agents.llm.v1 import llm_pb2 as llm_pb2

from services.common.errors import InvalidInput
from services.gateway.request_input import MAX_DEPTH, parse_json_body


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def refusal(body: object) -> InvalidInput:
    with pytest.raises(InvalidInput) as err:
        parse_json_body(json.dumps(body).encode())
    return err.value


def test_a_body_at_the_depth_limit_is_parsed_and_its_schema_survives_protobuf() -> None:
    body = {"json_output_format": nested(MAX_DEPTH - 1)}
    assert parse_json_body(json.dumps(body).encode()) == body
    request = llm_pb2.CompletionRequest()
    request.json_schema.update(body["json_output_format"])
    wire = llm_pb2.StreamCompleteRequest(request=request).SerializeToString()
    assert llm_pb2.StreamCompleteRequest.FromString(wire).request.json_schema == request.json_schema


def test_one_level_deeper_is_refused_naming_the_limit() -> None:
    assert f"{MAX_DEPTH} levels" in refusal(nested(MAX_DEPTH + 1)).message


def test_nesting_too_deep_for_the_json_parser_is_refused_naming_the_limit() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_json_body(b"[" * 100_000)
    assert f"{MAX_DEPTH} levels" in err.value.message


@pytest.mark.parametrize(
    ("body", "path", "what"),
    [
        ({"posts": [{"message": "a\x00b"}]}, "posts[0].message", "NUL"),
        ({"posts": [{}, {"message": "\ud800"}]}, "posts[1].message", "surrogate"),
        ({"services": [{"name": "x\udfff"}]}, "services[0].name", "surrogate"),
        ("\x00", "", "NUL"),
    ],
)
def test_unstorable_text_is_refused_naming_its_json_path(body: object, path: str, what: str) -> None:
    err = refusal(body)
    assert err.field == path and what in err.message
    assert (path or "the request body") in err.message


def test_a_key_with_nul_is_refused_naming_the_object_that_holds_it() -> None:
    err = refusal({"config": {"bad\x00key": 1}})
    assert err.field == "config" and "a key of config" in err.message


def test_a_surrogate_pair_is_text_not_a_lone_surrogate() -> None:
    assert parse_json_body(b'{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1])
def test_an_integer_beyond_64_bits_is_refused_naming_its_path(value: int) -> None:
    err = refusal({"updateAt": value})
    assert err.field == "updateAt" and "64-bit" in err.message


def test_64_bit_integers_and_booleans_pass() -> None:
    body = {"a": 2**63 - 1, "b": -(2**63), "c": True}
    assert parse_json_body(json.dumps(body).encode()) == body


@pytest.mark.parametrize("raw", [b"", b"  \n", b"{", b"\xff\xfe\x00"])
def test_an_empty_or_malformed_body_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_json_body(raw)
