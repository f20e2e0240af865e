"""Service validation per provider type and the write-only secret rules."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.index.registry.services_config import (
    MASK,
    REQUIRED_FIELDS,
    mask_service,
    normalise_service,
    resolve_masked_secrets,
    validate_service,
)


@pytest.mark.parametrize(("kind", "required"), sorted(REQUIRED_FIELDS.items()))
def test_each_type_names_its_missing_required_field(kind: str, required: tuple[str, ...]) -> None:
    complete = {"name": "s", "type": kind, **{f: "https://x.example" if f == "apiURL" else "v" for f in required}}
    validate_service(complete)
    for field in required:
        with pytest.raises(InvalidInput) as err:
            validate_service({**complete, field: ""})
        assert err.value.field == field


def test_an_unknown_type_is_refused_naming_type() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_service({"name": "s", "type": "llama"})
    assert err.value.field == "type"


def test_an_oversized_name_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_service({"name": "n" * 300, "type": "openai", "apiKey": "k"})
    assert err.value.field == "name"


def test_openai_always_uses_the_responses_api_and_anthropic_never() -> None:
    assert normalise_service({"type": "openai", "useResponsesAPI": False})["useResponsesAPI"] is True
    assert normalise_service({"type": "anthropic", "useResponsesAPI": True})["useResponsesAPI"] is False
    assert normalise_service({"type": "azure", "useResponsesAPI": True})["useResponsesAPI"] is True


def test_bedrock_without_keys_is_valid_for_the_default_credential_chain() -> None:
    validate_service({"name": "b", "type": "bedrock", "region": "us-east-1"})


def test_reads_mask_every_non_empty_secret() -> None:
    masked = mask_service({"apiKey": "k", "awsSecretAccessKey": "", "name": "n"})
    assert masked == {"apiKey": MASK, "awsSecretAccessKey": "", "name": "n"}


def test_a_masked_key_keeps_the_stored_one_while_the_url_is_unchanged() -> None:
    stored = {"type": "azure", "apiURL": "https://a.example", "apiKey": "real"}
    assert resolve_masked_secrets({**stored, "apiKey": MASK}, stored)["apiKey"] == "real"


def test_a_masked_key_with_a_changed_url_is_refused() -> None:
    stored = {"type": "azure", "apiURL": "https://a.example", "apiKey": "real"}
    with pytest.raises(InvalidInput) as err:
        resolve_masked_secrets({**stored, "apiURL": "https://b.example", "apiKey": MASK}, stored)
    assert err.value.field == "apiKey"
