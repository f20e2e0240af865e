"""LLM service configurations (the admin guide's "Services"): validation per provider type and
write-only secrets.

Services are plain dicts in the plugin's JSON shape (``apiKey``, ``apiURL``, ...), because they
live inside the plugin configuration document (``services[]``) exactly as the plugin stores them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from services.common.errors import InvalidInput

SERVICE_TYPES = (
    "openai",
    "openaicompatible",
    "azure",
    "anthropic",
    "bedrock",
    "cohere",
    "mistral",
    "scale",
    "asage",
    "gemini",
    "vertex",
)

# The admin guide's "Provider Specific Settings" table (required column), plus Vertex and Ask Sage
# from the plugin's IsValidService.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "openai": ("apiKey",),
    "openaicompatible": ("apiURL",),
    "azure": ("apiKey", "apiURL"),
    "anthropic": ("apiKey",),
    "bedrock": ("region",),
    "cohere": ("apiKey",),
    "mistral": ("apiKey",),
    "scale": ("apiKey", "apiURL"),
    "asage": ("apiKey",),
    "gemini": ("apiKey",),
    "vertex": ("vertexProjectID", "region"),
}

# Only these may toggle the Responses API; OpenAI always uses it, the others never do.
RESPONSES_API_TOGGLE = frozenset({"openaicompatible", "azure"})

SECRET_FIELDS = ("apiKey", "awsAccessKeyID", "awsSecretAccessKey", "vertexAuthCredentials")
# What a changed one of these means: the secret would be sent somewhere else, so it must be retyped.
ENDPOINT_FIELDS = ("type", "apiURL", "region", "vertexProjectID")
MASK = "********"

MAX_LENGTHS = {
    "id": 36,
    "name": 256,
    "defaultModel": 512,
    "apiURL": 2048,
    "orgId": 256,
    "region": 64,
    "accountID": 256,
    "vertexProjectID": 256,
    "vertexProjectNumber": 64,
    "apiKey": 8192,
    "awsAccessKeyID": 256,
    "awsSecretAccessKey": 1024,
    "vertexAuthCredentials": 65536,
    "fallbackServiceID": 36,
}
NON_NEGATIVE = ("tokenLimit", "outputTokenLimit", "streamingTimeoutSeconds")


def _str(service: Mapping[str, Any], key: str) -> str:
    value = service.get(key, "")
    return value if isinstance(value, str) else ""


def normalise_service(service: Mapping[str, Any]) -> dict[str, Any]:
    """The service with an id, trimmed strings and the Responses API flag forced where not a choice."""
    out = dict(service)
    for key, value in out.items():
        if isinstance(value, str) and key not in SECRET_FIELDS:
            out[key] = value.strip()
    if not out.get("id"):
        out["id"] = str(uuid.uuid4())
    kind = _str(out, "type")
    if kind == "openai":
        out["useResponsesAPI"] = True
    elif kind not in RESPONSES_API_TOGGLE:
        out["useResponsesAPI"] = False
    return out


def validate_service(service: Mapping[str, Any]) -> None:
    """Raise InvalidInput naming the first bad field (missing required value, unknown type, size)."""
    for key, limit in MAX_LENGTHS.items():
        if len(_str(service, key)) > limit:
            raise InvalidInput(f"service field {key} is longer than {limit} characters", field=key)
    kind = _validate_required(service)
    for key in NON_NEGATIVE:
        value = service.get(key, 0) or 0
        if not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{key} must be a non-negative integer", field=key)
    _validate_formats(service, kind)


def _validate_required(service: Mapping[str, Any]) -> str:
    """The service's type, once the name, a known type and that type's required fields are present."""
    if not _str(service, "name"):
        raise InvalidInput("service name is required", field="name")
    kind = _str(service, "type")
    if not kind:
        raise InvalidInput("service type is required", field="type")
    if kind not in REQUIRED_FIELDS:
        raise InvalidInput(f"unknown service type {kind!r}; expected one of {', '.join(SERVICE_TYPES)}", field="type")
    for key in REQUIRED_FIELDS[kind]:
        if not _str(service, key):
            raise InvalidInput(f"{key} is required for {kind} services", field=key)
    return kind


def _validate_formats(service: Mapping[str, Any], kind: str) -> None:
    """Values that must parse: the API URL and Vertex's service-account JSON."""
    if url := _str(service, "apiURL"):
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput("apiURL must be an absolute http(s) URL", field="apiURL")
    if kind == "vertex" and (creds := _str(service, "vertexAuthCredentials")) and creds != MASK:
        try:
            json.loads(creds)
        except ValueError:
            raise InvalidInput(
                "vertexAuthCredentials must be a service-account JSON document", field="vertexAuthCredentials"
            ) from None


def mask_service(service: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with every non-empty secret replaced by the mask."""
    return {k: (MASK if k in SECRET_FIELDS and v else v) for k, v in service.items()}


def resolve_masked_secrets(incoming: Mapping[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Replace masked secrets in ``incoming`` with the stored ones.

    A masked value keeps the stored secret only while the endpoint (type, URL, region, project) is
    unchanged; otherwise a key meant for one host would silently be sent to another.
    """
    out = dict(incoming)
    for key in SECRET_FIELDS:
        if out.get(key) != MASK:
            continue
        if stored is None or not stored.get(key):
            raise InvalidInput(f"{key} is masked but no secret is stored: enter it again", field=key)
        changed = [f for f in ENDPOINT_FIELDS if _str(out, f) != _str(stored, f)]
        if changed:
            raise InvalidInput(
                f"{changed[0]} changed, so {key} must be entered again instead of the masked value", field=key
            )
        out[key] = stored[key]
    return out
