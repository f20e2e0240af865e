"""Remote MCP servers in the plugin configuration: header rules and their secrets."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.index.registry.plugin_config import mask_config, resolve_config_secrets, validate_config
from services.index.registry.services_config import MASK


def _config(*servers: dict[str, object]) -> dict[str, object]:
    return {"services": [], "mcp": {"servers": list(servers)}}


def _server(**fields: object) -> dict[str, object]:
    return {"name": "jira", "enabled": True, "baseURL": "https://mcp.example.com/mcp", **fields}


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_config(_config(_server(headers={"X-Api-Key": value})))
    assert err.value.field == "mcp.servers[jira].headers.X-Api-Key"


def test_a_header_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_config(_config(_server(headers={"X-A\nB": "v"})))
    assert err.value.field.startswith("mcp.servers[jira].headers.")


def test_a_server_url_must_be_absolute_http() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_config(_config(_server(baseURL="file:///etc/passwd")))
    assert err.value.field == "mcp.servers[jira].baseURL"


def test_server_names_are_unique() -> None:
    with pytest.raises(InvalidInput) as err:
        validate_config(_config(_server(), _server()))
    assert err.value.field == "mcp.servers.name"


def test_reads_mask_every_header_value_and_the_client_secret() -> None:
    masked = mask_config(_config(_server(headers={"Authorization": "Bearer s3cret", "X-Empty": ""}, clientSecret="c")))
    server = masked["mcp"]["servers"][0]  # type: ignore[index]
    assert server["headers"] == {"Authorization": MASK, "X-Empty": ""}
    assert server["clientSecret"] == MASK


def test_a_masked_header_keeps_the_stored_value_while_the_url_is_unchanged() -> None:
    stored = _config(_server(headers={"Authorization": "Bearer s3cret"}))
    resolved = resolve_config_secrets(mask_config(stored), stored)
    assert resolved["mcp"]["servers"][0]["headers"] == {"Authorization": "Bearer s3cret"}


def test_a_masked_header_sent_to_a_new_url_is_refused() -> None:
    stored = _config(_server(headers={"Authorization": "Bearer s3cret"}))
    moved = mask_config(stored)
    moved["mcp"]["servers"][0]["baseURL"] = "https://elsewhere.example.com/mcp"  # type: ignore[index]
    with pytest.raises(InvalidInput) as err:
        resolve_config_secrets(moved, stored)
    assert "baseURL changed" in err.value.message
