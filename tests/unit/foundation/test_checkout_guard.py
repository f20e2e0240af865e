"""The suite cannot quietly depend on files beside the checkout (a user's clone has none)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO_ROOT


def test_reading_a_sibling_of_the_checkout_fails() -> None:
    with pytest.raises(PermissionError, match="outside the checkout"):
        open(REPO_ROOT.parent / "shared" / "reference" / "plugin-openapi.yaml")


def test_vendored_contracts_are_inside_the_checkout() -> None:
    for name in ("plugin-openapi.yaml", "mattermost-v4.yaml"):
        assert (REPO_ROOT / "tests" / "contract" / "specs" / name).is_file()
