"""``up --replicas`` / ``AGENTS_REPLICAS`` refuses a count that is not a whole number of at least
one before starting anything (running replicas: tests/integration/test_scale_out.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--replicas", "0"], {}, "--replicas (AGENTS_REPLICAS) must be at least 1, not 0"),
        ([], {"AGENTS_REPLICAS": "three"}, "argument --replicas: invalid int value: 'three'"),
    ],
)
def test_a_bad_replica_count_starts_nothing(tmp_path: Path, args: list[str], env: dict[str, str], says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cluster", "up", *args],
        env={**os.environ, "AGENTS_DATA_DIR": str(tmp_path), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert not list(tmp_path.iterdir())  # no pid file, no database
