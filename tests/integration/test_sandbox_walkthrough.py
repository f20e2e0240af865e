"""The README's "Try it locally" walkthrough, run as written, so that it cannot silently rot.

The sandbox (``tests/fakes/sandbox.py``) runs in-process and the cluster as real processes, both
on free ports; the README's terminal-3 ``bash`` blocks then run verbatim under bash (only the
gateway's and the fake OpenAI's default addresses are swapped for the test's ports), and what they
print must match the output blocks the README shows after them, ``...`` standing for any id. The
walkthrough runs twice in a row against one sandbox and one database, the README's delete command
in between, as the README tells a reader who runs it again.
The ``export`` lines the README shows must be the ones the sandbox prints: its ids and tokens are
stable, so a reader may paste them from the README as well as from terminal 1.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from services.cluster.supervisor import Cluster, ClusterConfig
from tests.fakes.sandbox import Sandbox
from tests.harness import SessionPostgres

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Try it locally"
# The addresses the README's commands use, and so the ones the test swaps for its own ports.
README_GATEWAY = "http://127.0.0.1:8700"
README_OPENAI = "http://127.0.0.1:8081"
README_MATTERMOST = "http://127.0.0.1:8065"
SCRIPT_TIMEOUT = 90.0  # both runs; the README's wait loop gives up after 30 s


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language (``""`` for shown output) and text."""

    lang: str
    text: str


def walkthrough_blocks() -> list[Block]:
    """The fenced blocks of the README's walkthrough section, in order."""
    text = README.read_text()
    start = text.index(f"\n{SECTION}\n")
    end = text.index("\n## ", start + 1)
    return [Block(m[1], m[2]) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text[start:end], re.M | re.S)]


def terminal_three(blocks: list[Block]) -> tuple[str, list[str]]:
    """The curl commands as one script, and the output lines the README shows for them."""
    commands: list[str] = []
    shown: list[str] = []
    in_curl = False
    for block in blocks:
        if block.lang == "bash":
            in_curl = "curl" in block.text
            if in_curl:
                commands.append(block.text)
        elif block.lang == "" and in_curl:
            shown += block.text.splitlines()
    return "\n".join(commands), shown


def matches(shown: str, actual: str) -> bool:
    """Whether an output line has the README's shape (``...`` is any run of id characters)."""
    pattern = ".*?".join(re.escape(part) for part in shown.split("..."))
    return re.fullmatch(pattern, actual) is not None


@pytest_asyncio.fixture(loop_scope="session")
async def running(postgres: SessionPostgres) -> AsyncIterator[tuple[Sandbox, Cluster, list[str]]]:
    logs: list[str] = []
    async with Sandbox(mattermost_port=0, openai_port=0) as sandbox:
        exports = sandbox.exports()
        env = {
            "AGENTS_MATTERMOST_URL": exports["AGENTS_MATTERMOST_URL"],
            "AGENTS_MATTERMOST_TOKEN": exports["AGENTS_MATTERMOST_TOKEN"],
            "AGENTS_SHUTDOWN_GRACE_SECONDS": "5",
        }
        config = ClusterConfig(
            database_url=await postgres.create_database("sandbox"),
            env=env,
            log_sink=lambda service, line: logs.append(f"{service} | {line}"),
        )
        cluster = Cluster(config)
        try:
            try:
                await cluster.start(timeout=60)
            except RuntimeError as err:
                raise RuntimeError(f"{err}; the services said:\n" + "\n".join(logs[-40:])) from None
            yield sandbox, cluster, logs
        finally:
            await cluster.stop(grace=10)


def test_the_readme_shows_the_exports_the_sandbox_prints() -> None:
    blocks = walkthrough_blocks()
    assert blocks[0] == Block("bash", "make sandbox\n")
    # Stable ids and tokens: a sandbox on the default ports, never started, already knows them.
    exports = Sandbox().exports()
    assert exports["AGENTS_MATTERMOST_URL"] == README_MATTERMOST
    expected = {f"export {name}={value}" for name, value in exports.items()}
    shown = {line for block in blocks for line in block.text.splitlines() if line.startswith("export ")}
    assert shown and shown <= expected, shown - expected
    assert expected <= shown, "the sandbox's banner in the README lacks some exports"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_walkthrough_runs_verbatim_against_the_sandbox(
    running: tuple[Sandbox, Cluster, list[str]],
) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        message = "the README walkthrough uses curl and jq; install them (.ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must prove the README works, never skip it
        pytest.skip(message)
    sandbox, cluster, logs = running
    script, shown = terminal_three(walkthrough_blocks())

    def here(text: str) -> str:
        return text.replace(README_GATEWAY, cluster.gateway_url).replace(README_OPENAI, sandbox.openai.url)

    # The README ends with the delete command that makes a second run possible: run it all twice.
    script, shown = here(script) + "\n" + here(script), [here(line) for line in shown] * 2
    env = {**os.environ, **sandbox.exports()}
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SCRIPT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("the walkthrough did not finish:\n" + "\n".join(logs[-40:])) from None
    actual = out.decode().splitlines()
    assert proc.returncode == 0, f"exit {proc.returncode}: {err.decode()}\n" + "\n".join(logs[-40:])
    services_said = "\n".join(logs[-40:])
    assert len(actual) == len(shown), (actual, shown, services_said)
    for expected_line, actual_line in zip(shown, actual, strict=True):
        assert matches(expected_line, actual_line), (expected_line, actual_line, services_said)
    # And it happened where the README says: alice's posts in a DM, answered by the agent's bot,
    # which the second run's agent took over from the deleted one.
    replies = [p for p in sandbox.mattermost.state.posts.values() if p["props"].get("responding_to")]
    assert len(replies) == 2 and replies[0]["user_id"] == replies[1]["user_id"]
    for reply in replies:
        assert sandbox.mattermost.state.channels[reply["channel_id"]]["type"] == "D"
        assert reply["props"]["agents_stream_status"] == "done"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_sandbox_command_prints_its_exports_and_stops_cleanly_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fakes.sandbox",
        "--mattermost-port",
        "0",
        "--openai-port",
        "0",
        cwd=README.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(20):
            while not printed or not printed[-1].startswith("Ctrl-C stops"):
                printed.append((await proc.stdout.readline()).decode().rstrip())
                assert printed[-1] or proc.returncode is None, printed
            exports = dict(line.removeprefix("export ").split("=", 1) for line in printed if line.startswith("export "))
            assert set(exports) == set(Sandbox().exports())
            # The printed URL answers, with the printed token, as alice.
            async with aiohttp.ClientSession() as http:
                url = f"{exports['AGENTS_MATTERMOST_URL']}/api/v4/users/me"
                async with http.get(url, headers={"Authorization": f"Bearer {exports['ALICE_TOKEN']}"}) as resp:
                    assert resp.status == 200 and (await resp.json())["id"] == exports["ALICE_ID"]
            proc.send_signal(signal.SIGINT)
            rest = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "sandbox stopped" in rest
