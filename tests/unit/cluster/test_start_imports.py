"""What a service process imports before it serves: a library only one configuration uses is left
out, since every start pays for its import in CPU (every test cluster's start too)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def imported_at_start(service: str) -> set[str]:
    """The top-level packages ``python -m services.<service>`` has imported by the time it reads
    its settings (invalid ones here, so it exits right after, with status 2)."""
    env = {**os.environ, "AGENTS_LOG_LEVEL": "LOUD"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", f"services.{service}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines}


@pytest.mark.parametrize(
    ("service", "library"),
    [
        ("index", "kubernetes_asyncio"),  # only the Kubernetes reindex backend uses it
        ("gateway", "sqlalchemy"),  # the gateway has no database
    ],
)
def test_a_service_start_does_not_import_a_library_it_does_not_use(service: str, library: str) -> None:
    imported = imported_at_start(service)
    assert "grpc" in imported  # the start did import its own modules
    assert library not in imported
