"""The admin guide's license table, and the license as the plugin reads it from Mattermost."""

from __future__ import annotations

import pytest

from services.common.licensing import Feature, License, from_mattermost, is_licensed


def test_every_licensed_feature_needs_at_least_entry() -> None:
    assert all(not is_licensed(License.NONE, f) and is_licensed(License.ENTRY, f) for f in Feature)
    assert License.parse("Enterprise-Advanced") is License.ENTERPRISE_ADVANCED


UNLICENSED = {"IsLicensed": "false"}
TEAM_EDITION = {"BuildEnterpriseReady": "false"}
ENTERPRISE_EDITION = {"BuildEnterpriseReady": "true"}


def sku(name: str, **features: str) -> dict[str, str]:
    return {"IsLicensed": "true", "SkuShortName": name, **features}


@pytest.mark.parametrize(
    ("client_license", "client_config", "expected"),
    [
        (UNLICENSED, TEAM_EDITION, License.NONE),
        (UNLICENSED, ENTERPRISE_EDITION, License.ENTRY),  # the guide: Entry applied automatically
        (sku("entry"), ENTERPRISE_EDITION, License.ENTRY),
        (sku("professional"), ENTERPRISE_EDITION, License.NONE),
        (sku("E10", MessageExport="true"), ENTERPRISE_EDITION, License.NONE),
        (sku("E20"), ENTERPRISE_EDITION, License.ENTERPRISE),
        (sku("enterprise"), ENTERPRISE_EDITION, License.ENTERPRISE),
        (sku("advanced"), ENTERPRISE_EDITION, License.ENTERPRISE_ADVANCED),
        (sku("future-tier", MessageExport="true"), ENTERPRISE_EDITION, License.ENTERPRISE),
        (sku("future-tier"), ENTERPRISE_EDITION, License.NONE),
        (UNLICENSED, {"EnableDeveloper": "true", "EnableTesting": "true"}, License.ENTERPRISE),
        (UNLICENSED, {"EnableDeveloper": "true", "EnableTesting": "false"}, License.NONE),
    ],
)
def test_the_license_is_read_from_mattermost_as_the_plugin_reads_it(
    client_license: dict[str, str], client_config: dict[str, str], expected: License
) -> None:
    assert from_mattermost(client_license, client_config) is expected
