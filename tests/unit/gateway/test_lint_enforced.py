"""`make lint` holds the gateway to the house style like the clean folders: docstrings, complexity
and strict mypy apply to ``services/gateway`` (only the claims module is still excused)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.unit.foundation.test_style_checks import UNDOCUMENTED, _ruff


def test_an_undocumented_public_function_in_the_gateway_fails_ruff() -> None:
    assert "D103" in _ruff(UNDOCUMENTED, "services/gateway/routes/example.py")


def test_a_function_with_thirteen_paths_in_the_gateway_fails_ruff() -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(12))
    source = f'"""A module."""\n\n\ndef paths(x: int) -> int:\n    """Thirteen paths."""\n{branches}    return x\n'
    assert "C901" in _ruff(source, "services/gateway/example.py")


def test_mypy_reports_type_errors_in_gateway_modules(tmp_path: Path) -> None:
    # Laid out as the package so that mypy names it services.gateway.sample, which the
    # configuration's overrides would match.
    package = tmp_path / "services" / "gateway"
    package.mkdir(parents=True)
    (tmp_path / "services" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "sample.py").write_text("def untyped(x):\n    return x\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO_ROOT / "pyproject.toml"),
            "--cache-dir",
            os.devnull,
            "services/gateway/sample.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert "services/gateway/sample.py:1: error" in result.stdout, result.stdout
    assert "[no-untyped-def]" in result.stdout, result.stdout
