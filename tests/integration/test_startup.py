"""Start-up behaviour: concurrent replicas migrating one database, the `make up` command (its
checks before starting anything, its restarts of crashed services) and the Makefile's help."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import psycopg
import pytest

from services.cluster.supervisor import free_port
from tests.fakes.mattermost import FakeMattermost
from tests.harness import SessionPostgres, wait_serving
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("GATEWAY", "INDEX", "LLM", "TOOLS", "MCP")
# Free ports for every listener `make up` opens, its metrics listeners too (their defaults may be taken).
PORT_VARIABLES = (
    "AGENTS_GATEWAY_HTTP_PORT",
    *(f"AGENTS_{n}_GRPC_PORT" for n in SERVICES[1:]),
    *(f"AGENTS_{n}_METRICS_PORT" for n in SERVICES),
)


def up_environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """What a user's shell gives `make up`: free ports, their own data directory."""
    env = {**os.environ, **{var: str(free_port()) for var in PORT_VARIABLES}, "AGENTS_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    return {**env, **extra}


class MakeUp:
    """``python -m services.cluster up`` as a process whose output is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.errors = ""
        self._pump = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode().rstrip("\n"))

    def said(self, pattern: str) -> re.Match[str] | None:
        return next((m for line in self.lines if (m := re.search(pattern, line))), None)

    async def wait_for(self, pattern: str, within: float = 120) -> re.Match[str]:
        def seen() -> re.Match[str] | None:
            if self.proc.returncode is not None and self._pump.done():
                raise AssertionError(f"make up exited ({self.proc.returncode}):\n{self.output()}")
            return self.said(pattern)

        return await poll(seen, within=within, interval=0.1, message=f"never said {pattern!r}:\n{self.output()}")

    async def finish(self, within: float = 60) -> int:
        assert self.proc.stderr is not None
        self.errors = (await asyncio.wait_for(self.proc.stderr.read(), within)).decode()
        code = await asyncio.wait_for(self.proc.wait(), within)
        await self._pump
        return code

    def output(self) -> str:
        return "\n".join(self.lines) + "\n" + self.errors


@asynccontextmanager
async def make_up(env: dict[str, str]) -> AsyncIterator[MakeUp]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cluster",
        "up",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield MakeUp(proc)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), 60)


async def test_three_replicas_starting_together_migrate_the_database_once(postgres: SessionPostgres) -> None:
    database_url = await postgres.create_database("replicas")
    ports = [free_port() for _ in range(3)]
    logs = [tempfile.TemporaryFile() for _ in ports]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.index",
            env={**os.environ, "DATABASE_URL": database_url, "AGENTS_INDEX_GRPC_PORT": str(port)},
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        for port, log in zip(ports, logs, strict=True)
    ]

    def replica_logs() -> str:
        out = []
        for log in logs:
            log.seek(0)
            out.append(log.read().decode(errors="replace"))
        return "\n---\n".join(out)

    try:
        try:
            await asyncio.gather(*(wait_serving(p) for p in ports))
        except AssertionError as err:
            raise AssertionError(f"{err}\n{replica_logs()}") from None
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            versions = await (await conn.execute("SELECT version_num FROM alembic_version_index")).fetchall()
            tables = await (
                await conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'agents_useragents'")
            ).fetchone()
        # Once, at the head: one row in the version table, the newest revision's.
        head = max(path.name.split("_")[0] for path in (REPO / "services/index/migrations/versions").glob("0*.py"))
        assert versions == [(head,)]
        assert tables == (1,)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 30) for p in procs]
        assert codes == [0, 0, 0], replica_logs()


async def test_make_up_serves_the_cluster_and_stops_everything_on_ctrl_c(postgres: SessionPostgres) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="agents-up-"))
    ports = {var: free_port() for var in PORT_VARIABLES}
    async with FakeMattermost() as mm:
        account = mm.add_user("agents-cluster", roles="system_user system_admin", is_bot=True)
        user = mm.add_user("grace")
        env = {
            **os.environ,
            **{k: str(v) for k, v in ports.items()},
            "AGENTS_DATA_DIR": str(data_dir),
            "AGENTS_MATTERMOST_URL": mm.url,
            "AGENTS_MATTERMOST_TOKEN": account.token,
        }
        env.pop("DATABASE_URL", None)
        async with make_up(env) as up:
            await up.wait_for("cluster ready")
            url = f"http://127.0.0.1:{ports['AGENTS_GATEWAY_HTTP_PORT']}/plugins/mattermost-ai/ai_bots"
            async with aiohttp.ClientSession() as http:
                async with http.get(url, headers={"Authorization": f"Bearer {user.token}"}) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["bots"] == []
                metrics = f"http://127.0.0.1:{ports['AGENTS_GATEWAY_METRICS_PORT']}/plugins/mattermost-ai/metrics"
                async with http.get(metrics) as resp:
                    assert "agents_http_requests_total 1.0" in await resp.text()
            assert (data_dir / "cluster.pid").exists()
            up.proc.send_signal(signal.SIGINT)
            assert await up.finish() == 0, up.output()
        assert up.said("stopped"), up.output()
        assert not (data_dir / "cluster.pid").exists()
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        # The data directory's key for users' MCP OAuth tokens: made once, readable by its owner only.
        key = data_dir / "mcp-token.key"
        assert key.stat().st_mode & 0o077 == 0
        assert len(base64.urlsafe_b64decode(key.read_text())) == 32
        # What it printed is what the README shows (a first start: it says it runs initdb), with
        # the real data directory: other numbers (time, ports, pids) vary.
        readme_sample_in_order(readme_up_sample(), up.lines, data_dir)


def readme_up_sample() -> list[str]:
    """The output block that follows `make up` in the README's "The two commands"."""
    text = (REPO / "README.md").read_text()
    start = text.index("\n## The two commands\n")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.M | re.S)
    return next(body for lang, body in blocks if not lang and "cluster ready" in body).splitlines()


def readme_sample_in_order(sample: list[str], output: list[str], data_dir: Path) -> None:
    """Every non-blank README line matches an output line, in order (service logs may come between)."""
    lines = iter(line.rstrip("\n") for line in output)
    for shown in filter(str.strip, sample):
        pattern = re.sub(r"\d+(?:\\\.\d+)?", r"\\d+(?:\\.\\d+)?", re.escape(shown))
        pattern = pattern.replace(re.escape(".data"), re.escape(str(data_dir)))
        assert any(re.fullmatch(pattern, line) for line in lines), f"README line {shown!r} not printed:\n" + "\n".join(
            output
        )


async def test_make_up_restarts_a_killed_service_and_says_so(postgres: SessionPostgres, tmp_path: Path) -> None:
    database_url = await postgres.create_database("restart")
    env = up_environment(tmp_path, DATABASE_URL=database_url)
    async with make_up(env) as up:
        await up.wait_for("cluster ready")
        killed = int((await up.wait_for(r"llm started \(pid (\d+)\)"))[1])
        os.kill(killed, signal.SIGKILL)
        await up.wait_for(r"llm exited unexpectedly \(killed by SIGKILL\); restarting it")
        await up.wait_for("llm restarted: SERVING again", within=60)
        await wait_serving(int(env["AGENTS_LLM_GRPC_PORT"]))
        pids = re.findall(r"llm started \(pid (\d+)\)", "\n".join(up.lines))
        assert len(pids) == 2 and int(pids[1]) != killed
        up.proc.send_signal(signal.SIGINT)
        assert await up.finish() == 0, up.output()


@pytest.mark.slow  # six starts of the index and 15.5 s of back-off
async def test_make_up_stops_the_cluster_when_a_service_keeps_crashing(
    postgres: SessionPostgres, tmp_path: Path
) -> None:
    database_url = await postgres.create_database("crashloop")
    # A seed file that is not there: the index fails at every start, after its settings passed.
    env = up_environment(tmp_path, DATABASE_URL=database_url, AGENTS_INDEX_CONFIG_SEED_FILE=str(tmp_path / "none"))
    async with make_up(env) as up:
        code = await up.finish(within=180)
    assert code == 1, up.output()
    assert re.search(r"crash loop: index crashed 6 times within 60s \(exit code 1 the last time\)", up.errors)
    assert "stopping the cluster" in up.errors
    assert up.said("index exited unexpectedly") and up.lines[-1] == "stopped"
    assert not (tmp_path / "cluster.pid").exists()


async def test_bad_settings_stop_make_up_before_anything_starts_naming_every_variable(tmp_path: Path) -> None:
    env = up_environment(
        tmp_path,
        AGENTS_GATEWAY_HTTP_PORT="abc",
        AGENTS_LOG_LEVEL="LOUD",
        AGENTS_TOOLS_GRPC_PORT="70000",
        AGENTS_MCP_TOKEN_KEY="too-short",
    )
    async with make_up(env) as up:
        code = await up.finish()
    assert code == 2, up.output()
    assert "AGENTS_GATEWAY_HTTP_PORT: Input should be a valid integer" in up.errors
    assert "AGENTS_LOG_LEVEL: Input should be" in up.errors and up.errors.count("AGENTS_LOG_LEVEL") == 1
    assert "AGENTS_TOOLS_GRPC_PORT: Input should be less than or equal to 65535" in up.errors
    assert "AGENTS_MCP_TOKEN_KEY: Value error, AGENTS_MCP_TOKEN_KEY must be 32 bytes" in up.errors
    assert "too-short" not in up.output()
    assert "Traceback" not in up.output()
    # Nothing started: no PostgreSQL, no pid file for `make down` to trip over.
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "cluster.pid").exists()


async def test_a_taken_port_names_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = up_environment(tmp_path, AGENTS_MCP_GRPC_PORT=str(taken.getsockname()[1]))
        async with make_up(env) as up:
            code = await up.finish()
    assert code == 2, up.output()
    assert f"port {env['AGENTS_MCP_GRPC_PORT']} (mcp) is already in use: set AGENTS_MCP_GRPC_PORT" in up.errors
    assert "Traceback" not in up.output()
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "cluster.pid").exists()


async def run_make(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "make", "-s", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return await proc.wait(), out.decode(), err.decode()


async def test_make_alone_lists_every_target_with_one_line_each() -> None:
    code, listed, _ = await run_make()
    assert code == 0
    phony = re.search(r"^\.PHONY: (.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony
    for target in phony[1].split():
        assert re.search(rf"^  make {re.escape(target)} +\S", listed, re.M), (target, listed)


async def test_make_down_in_a_clone_never_installed_says_so_plainly(tmp_path: Path) -> None:
    code, out, err = await run_make("down", f"VENV={tmp_path / 'venv'}")
    assert code == 0 and not err, err
    assert out.startswith("no cluster is running: nothing is installed here yet")
