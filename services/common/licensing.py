"""The admin guide's license table: which features need which license.

The license is given to the cluster in the index service's settings and travels to every service
with the plugin configuration (``WatchPluginConfig``), so every service gates features the same way.
"""

from __future__ import annotations

import enum

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
    # Not a row of the guide's table, but the plugin gates its tool approval routes on the same
    # license check as AI actions (plugin-api.md 1.2, /post/{id}/tool_call).
    TOOL_APPROVAL = "tool call approval"


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
