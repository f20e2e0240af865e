"""Validate gateway responses against the plugin's OpenAPI document (plugin-openapi.yaml).

    assert_matches_openapi("GET", "/agents/{agentid}", 200, body)

Paths are relative to /plugins/mattermost-ai. The document is vendored in ``tests/contract/specs``.
$refs are resolved against the document itself.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PLUGIN_PREFIX = "/plugins/mattermost-ai"
DOCUMENT_URI = "urn:agents-plugin-openapi"


def reference_dir() -> Path:
    """The vendored contracts (``tests/contract/specs``, see its README for their provenance)."""
    return Path(__file__).resolve().parent / "specs"


@functools.cache
def load_plugin_spec() -> dict[str, Any]:
    """The plugin's OpenAPI document, parsed once per test process."""
    with (reference_dir() / "plugin-openapi.yaml").open() as handle:
        return yaml.safe_load(handle)


@functools.cache
def _registry() -> Registry:
    """The whole document, converted once, so $refs land on converted component schemas."""
    converted = _openapi_to_jsonschema(load_plugin_spec())
    return Registry().with_resource(DOCUMENT_URI, Resource.from_contents(converted, default_specification=DRAFT202012))


def _openapi_to_jsonschema(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` → a JSON Schema type union; refs point into the document."""
    if isinstance(schema, list):
        return [_openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _openapi_to_jsonschema(v) for k, v in schema.items() if k not in ("nullable", "writeOnly", "example")}
    if "$ref" in out and out["$ref"].startswith("#"):
        out["$ref"] = DOCUMENT_URI + out["$ref"]
    if schema.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    spec = load_plugin_spec()
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def response_schema(method: str, path_template: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a documented response, or None when the response has no JSON body.
    AssertionError when the route or status is not documented."""
    paths = load_plugin_spec()["paths"]
    full = PLUGIN_PREFIX + path_template
    assert full in paths, f"{full} is not in plugin-openapi.yaml"
    operation = paths[full].get(method.lower())
    assert operation is not None, f"{method} {full} is not documented"
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {full} does not document status {status}"
    response = _resolve(responses[str(status)])
    content = response.get("content") or {}
    if "application/json" not in content:
        return None
    return content["application/json"].get("schema")


def assert_matches_openapi(method: str, path_template: str, status: int, body: Any) -> None:
    """Assert that ``body`` (parsed JSON, or None) is what the document allows for this response."""
    schema = response_schema(method, path_template, status)
    if schema is None:
        return
    validator = jsonschema.Draft202012Validator(_openapi_to_jsonschema(schema), registry=_registry())
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{method} {path_template} {status}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
    )
