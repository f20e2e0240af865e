"""The admin guide's license table: which features need which license.

The index service reads the license from Mattermost (or takes its settings' override) and sends it
to every service with the plugin configuration (``WatchPluginConfig``), so every service gates
features the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from services.common.errors import PermissionDenied


class License(enum.IntEnum):
    """Values match agents.registry.v1.License."""

    NONE = 0
    ENTRY = 1
    ENTERPRISE = 2
    ENTERPRISE_ADVANCED = 3

    @classmethod
    def parse(cls, raw: str) -> License:
        """``none``, ``entry``, ``enterprise`` or ``enterprise_advanced`` (case and dashes ignored)."""
        key = raw.strip().lower().replace("-", "_").replace(" ", "_") or "none"
        try:
            return cls[key.upper()]
        except KeyError:
            raise ValueError(f"unknown license {raw!r}: use none, entry, enterprise or enterprise_advanced") from None


class Feature(enum.StrEnum):
    """Licensed features, named as the admin guide names them (the name appears in 403 messages)."""

    MULTIPLE_AGENTS = "multiple agent configurations"
    FINE_GRAINED_ACCESS = "fine-grained access controls"
    EMBEDDING_SEARCH = "embedding search"
    MCP = "MCP support"
    TOKEN_TRACKING = "usage analytics and token tracking"
    AI_ACTIONS = "AI actions"
    CHANNEL_SUMMARIES = "channel summarization"
    TRANSCRIPTS = "recorded meeting transcripts and summarization"


# Every licensed feature is available from Entry upwards (the guide lists Entry, Enterprise and
# Enterprise Advanced for each row); kept as a table so a future tier-specific row is one line.
MINIMUM_LICENSE: dict[Feature, License] = {feature: License.ENTRY for feature in Feature}

# Agents allowed without a license (the plugin's FreeTierAgentLimit).
FREE_TIER_AGENT_LIMIT = 1


def is_licensed(license: License, feature: Feature) -> bool:
    """True when ``license`` unlocks ``feature``."""
    return license >= MINIMUM_LICENSE[feature]


def require(license: License, feature: Feature) -> None:
    """Raise PermissionDenied naming the feature when the license does not cover it."""
    if not is_licensed(license, feature):
        raise PermissionDenied(f"{feature.value} requires a license (Entry, Enterprise or Enterprise Advanced)")


# Mattermost's license SKU short names (model.License.SkuShortName) that unlock the guide's
# licensed features; "E20" is the legacy name of Enterprise.
_SKU_LICENSES = {
    "entry": License.ENTRY,
    "E20": License.ENTERPRISE,
    "enterprise": License.ENTERPRISE,
    "advanced": License.ENTERPRISE_ADVANCED,
}
# Professional and E10 unlock none of them (the plugin checks for E20 or above).
_KNOWN_SKUS = {*_SKU_LICENSES, "professional", "E10"}


def from_mattermost(client_license: Mapping[str, object], client_config: Mapping[str, object]) -> License:
    """The license as the plugin reads it from Mattermost's ``/license/client`` and
    ``/config/client`` (both ``format=old``: string values)."""
    if client_config.get("EnableDeveloper") == "true" and client_config.get("EnableTesting") == "true":
        return License.ENTERPRISE  # the plugin's developer mode counts as licensed
    if client_license.get("IsLicensed") != "true":
        # The guide: an Enterprise Edition server without a license gets Entry automatically.
        return License.ENTRY if client_config.get("BuildEnterpriseReady") == "true" else License.NONE
    sku = str(client_license.get("SkuShortName", ""))
    if sku in _SKU_LICENSES:
        return _SKU_LICENSES[sku]
    # The plugin's fallback for a SKU it does not know: an Enterprise-only feature of the license.
    if sku not in _KNOWN_SKUS and client_license.get("MessageExport") == "true":
        return License.ENTERPRISE
    return License.NONE
