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


STRONG = "s" * 31 + "="  # 32 characters, one of them "=" (base64 padding)


def test_bridge_plugin_secrets_are_plugin_id_secret_pairs() -> None:
    settings = load_gateway({"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f" com.a={STRONG},\ncom.b={'t' * 40} "})
    assert settings.bridge_plugin_secrets == {"com.a": STRONG, "com.b": "t" * 40}
    assert STRONG not in repr(settings)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (STRONG, "each entry must be plugin-id=secret"),
        (f"={STRONG}", "each entry must be plugin-id=secret"),
        (f"com.a={STRONG} com.a={STRONG}", "plugin com.a is listed twice"),
        ("com.a=" + STRONG[:31], "the secret of plugin com.a must be at least 32 characters"),
    ],
)
def test_a_bad_bridge_plugin_secret_is_named_without_showing_it(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_gateway({"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": value})
    assert f"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS: Value error, {problem}" in str(err.value)
    assert STRONG[:31] not in str(err.value)


def test_bridge_plugin_secrets_are_refused_in_trusted_proxy_mode() -> None:
    env = {
        "AGENTS_GATEWAY_AUTH_MODE": "trusted_proxy",
        "AGENTS_GATEWAY_PROXY_SHARED_SECRET": "shim",
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"com.a={STRONG}",
    }
    with pytest.raises(SettingsError, match="bridge_plugin_secrets is for session mode"):
        load_gateway(env)
