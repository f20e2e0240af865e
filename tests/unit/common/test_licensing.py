"""The admin guide's license table."""

from __future__ import annotations

from services.common.licensing import Feature, License, is_licensed


def test_every_licensed_feature_needs_at_least_entry() -> None:
    assert all(not is_licensed(License.NONE, f) and is_licensed(License.ENTRY, f) for f in Feature)
    assert License.parse("Enterprise-Advanced") is License.ENTERPRISE_ADVANCED
