from __future__ import annotations

import pytest

from services.common.settings import SettingsError
from services.gateway.settings import load as load_gateway
from services.index.settings import load as load_index


def test_service_prefix_wins_over_the_shared_prefix() -> None:
    settings = load_index({"AGENTS_INDEX_LOG_LEVEL": "DEBUG", "AGENTS_LOG_LEVEL": "ERROR"})
    assert settings.log_level == "DEBUG"


def test_shared_prefix_applies_to_common_fields() -> None:
    settings = load_index({"AGENTS_SERVICE_TOKEN": "s3cret", "DATABASE_URL": "postgresql://db/x"})
    assert settings.service_token == "s3cret"
    assert settings.database_url == "postgresql://db/x"


def test_every_invalid_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as err:
        load_index({"AGENTS_INDEX_GRPC_PORT": "not-a-port", "AGENTS_LOG_LEVEL": "LOUD"})
    message = str(err.value)
    assert "AGENTS_INDEX_GRPC_PORT" in message
    assert "AGENTS_LOG_LEVEL" in message


def test_trusted_proxy_mode_without_a_shared_secret_is_refused() -> None:
    with pytest.raises(SettingsError, match="proxy_shared_secret"):
        load_gateway({"AGENTS_GATEWAY_AUTH_MODE": "trusted_proxy"})


def test_secrets_do_not_appear_in_the_settings_repr() -> None:
    settings = load_gateway({"AGENTS_MATTERMOST_TOKEN": "tok-123", "AGENTS_SERVICE_TOKEN": "svc-456"})
    assert "tok-123" not in repr(settings)
    assert "svc-456" not in repr(settings)
