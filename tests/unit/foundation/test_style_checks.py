"""`make lint` enforces the house style: each check is run the way the Makefile runs it, on a
sample that breaks one rule, and must report that rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

BUF = REPO_ROOT / ".tools" / "node_modules" / ".bin" / "buf"

UNDOCUMENTED = '"""A module."""\n\n\ndef public(x: int) -> int:\n    return x\n'


def _ruff(source: str, filename: str) -> str:
    """Ruff's findings on ``source`` as if it were the repository file ``filename``."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--output-format=concise",
            f"--stdin-filename={filename}",
            "-",
        ],
        input=source,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    return result.stdout


def test_make_lint_runs_ruff_the_format_check_mypy_and_buf() -> None:
    result = subprocess.run(["make", "-n", "lint"], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    for command in ("ruff check .", "ruff format --check .", "/mypy ", "buf lint"):
        assert command in result.stdout, (command, result.stdout)


def test_an_undocumented_public_function_in_services_fails_ruff() -> None:
    assert "D103" in _ruff(UNDOCUMENTED, "services/tools/example.py")


def test_tests_need_no_docstrings() -> None:
    assert "D103" not in _ruff(UNDOCUMENTED, "tests/unit/example.py")


def test_a_function_with_thirteen_paths_fails_ruff() -> None:
    branches = "".join(f"    if x == {n}:\n        return {n}\n" for n in range(12))
    source = f'"""A module."""\n\n\ndef paths(x: int) -> int:\n    """Thirteen paths."""\n{branches}    return x\n'
    assert "C901" in _ruff(source, "services/tools/example.py")


def test_mypy_is_strict(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def untyped(x):\n    return x\n")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", os.devnull, str(sample)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert "[no-untyped-def]" in result.stdout, result.stdout


def test_a_service_rpc_or_message_without_a_comment_fails_buf_lint(tmp_path: Path) -> None:
    if not BUF.exists():
        message = "buf is installed by `make proto-lint` (make test runs it first)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must prove the rule holds, never skip it
        pytest.skip(message)
    shutil.copy(REPO_ROOT / "buf.yaml", tmp_path / "buf.yaml")
    proto = tmp_path / "protos" / "agents" / "demo" / "v1" / "demo.proto"
    proto.parent.mkdir(parents=True)
    proto.write_text(
        'syntax = "proto3";\n\npackage agents.demo.v1;\n\n'
        "service Demo {\n  rpc Ping(PingRequest) returns (PingResponse);\n}\n\n"
        "message PingRequest {}\nmessage PingResponse {}\n"
    )
    result = subprocess.run([BUF, "lint"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert 'Service "Demo" should have a non-empty comment' in result.stdout, result.stdout
    assert 'RPC "Ping" should have a non-empty comment' in result.stdout, result.stdout
    assert 'Message "PingRequest" should have a non-empty comment' in result.stdout, result.stdout
