"""Start-up behaviour: concurrent replicas migrating one database, and the `make up` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from services.cluster.supervisor import free_port
from tests.fakes.mattermost import FakeMattermost
from tests.harness import SessionPostgres

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def wait_serving(port: int, within: float = 60) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + within
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert time.monotonic() < deadline, f"index on {port} never became SERVING"
            await asyncio.sleep(0.05)


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
        assert versions == [("0002",)]
        assert tables == (1,)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 30) for p in procs]
        assert codes == [0, 0, 0], replica_logs()


async def test_make_up_serves_the_cluster_and_stops_everything_on_ctrl_c(postgres: SessionPostgres) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="agents-up-"))
    ports = {
        "AGENTS_GATEWAY_HTTP_PORT": free_port(),
        **{f"AGENTS_{n}_GRPC_PORT": free_port() for n in ("INDEX", "LLM", "TOOLS", "MCP")},
    }
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
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cluster", "up", env=env, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        output: list[str] = []
        try:
            deadline = time.monotonic() + 120
            while not any("cluster ready" in line for line in output):
                assert time.monotonic() < deadline, "".join(output)
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                assert line, "make up exited early:\n" + "".join(output)
                output.append(line.decode())
            url = f"http://127.0.0.1:{ports['AGENTS_GATEWAY_HTTP_PORT']}/plugins/mattermost-ai/ai_bots"
            async with aiohttp.ClientSession() as http:
                async with http.get(url, headers={"Authorization": f"Bearer {user.token}"}) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["bots"] == []
            assert (data_dir / "cluster.pid").exists()
        finally:
            proc.send_signal(signal.SIGINT)
            rest = await asyncio.wait_for(proc.stdout.read(), 60)
            code = await asyncio.wait_for(proc.wait(), 60)
        assert code == 0, rest.decode()
        assert "stopped" in rest.decode()
        assert not (data_dir / "cluster.pid").exists()
        assert (data_dir / "postgres" / "PG_VERSION").exists()
