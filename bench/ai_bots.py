"""Foundation benchmark: cold start of the whole cluster, and latency of GET /ai_bots through
gateway → index (registry) → PostgreSQL.

Cold start = a fresh embedded PostgreSQL data folder (initdb included) until every health check
is SERVING, and separately the five services alone against an already running database.
Latency = sequential requests (one in flight) after a warm-up, then a concurrent run; the fake
Mattermost answers the gateway's auth/team look-ups, which are cached for 30 s as in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import psycopg

from bench.stats import percentile, print_rows
from services.cluster.postgres import EmbeddedPostgres
from services.cluster.supervisor import Cluster, ClusterConfig
from services.index.registry.store import AGENTS_CHANNEL
from tests.fakes.mattermost import FakeMattermost

REQUESTS = int(os.environ.get("BENCH_AI_BOTS_REQUESTS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_AI_BOTS_CONCURRENCY", "16"))
AGENTS = 5


async def seed_agents(database_url: str, mm: FakeMattermost) -> None:
    now = int(time.time() * 1000)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for i in range(AGENTS):
            bot = mm.add_user(f"bench-bot-{i}", is_bot=True)
            await conn.execute(
                "INSERT INTO agents_useragents (id, botuserid, username, displayname, serviceid, createat, updateat)"
                " VALUES (%s, %s, %s, %s, 'svc', %s, %s)",
                (f"agent{i:021d}", bot.id, f"bench-bot-{i}", f"Bench {i}", now, now),
            )
        # Written behind the registry's back: tell its replicas, as the registry's own writes do.
        await conn.execute("SELECT pg_notify(%s, '')", (AGENTS_CHANNEL,))


async def run() -> None:
    work = Path(tempfile.mkdtemp(prefix="agents-bench-"))
    postgres = EmbeddedPostgres(work / "pg")
    async with FakeMattermost() as mm:
        account = mm.add_user("agents-cluster", roles="system_user system_admin", is_bot=True)
        user = mm.add_user("bench-user")
        t0 = time.perf_counter()
        database_url = await postgres.start()
        pg_ready = time.perf_counter() - t0
        env = {"AGENTS_MATTERMOST_URL": mm.url, "AGENTS_MATTERMOST_TOKEN": account.token, "AGENTS_LOG_LEVEL": "WARNING"}
        cluster = Cluster(ClusterConfig(database_url=database_url, env=env, log_sink=lambda *_: None))
        t1 = time.perf_counter()
        await cluster.start(timeout=120)
        services_ready = time.perf_counter() - t1
        cold_total = time.perf_counter() - t0
        try:
            await seed_agents(database_url, mm)
            url = f"{cluster.gateway_url}/plugins/mattermost-ai/ai_bots"
            headers = {"Authorization": f"Bearer {user.token}"}
            async with aiohttp.ClientSession() as http:
                for _ in range(50):  # warm-up: connections, caches, JIT-free but pool-filled
                    async with http.get(url, headers=headers) as r:
                        assert r.status == 200, await r.text()
                        body = await r.json()
                # Every seeded agent is listed: the numbers below measure the real payload.
                assert len(body["bots"]) == AGENTS, body
                latencies = []
                for _ in range(REQUESTS):
                    start = time.perf_counter()
                    async with http.get(url, headers=headers) as r:
                        await r.read()
                        assert r.status == 200
                    latencies.append(time.perf_counter() - start)

                async def worker(n: int) -> None:
                    for _ in range(n):
                        async with http.get(url, headers=headers) as r:
                            await r.read()
                            assert r.status == 200

                per_worker = REQUESTS // CONCURRENCY
                t2 = time.perf_counter()
                await asyncio.gather(*(worker(per_worker) for _ in range(CONCURRENCY)))
                rps = per_worker * CONCURRENCY / (time.perf_counter() - t2)
        finally:
            await cluster.stop(grace=10)
            await postgres.stop()
            shutil.rmtree(work, ignore_errors=True)
    ms = [x * 1000 for x in latencies]
    rows = [
        ("cold start: embedded PostgreSQL (fresh initdb)", f"{pg_ready:.2f}s"),
        ("cold start: five services to SERVING", f"{services_ready:.2f}s"),
        ("cold start: total", f"{cold_total:.2f}s"),
        (f"GET /ai_bots p50 (1 in flight, n={REQUESTS})", f"{statistics.median(ms):.2f}ms"),
        ("GET /ai_bots p90", f"{percentile(ms, 90):.2f}ms"),
        ("GET /ai_bots p99", f"{percentile(ms, 99):.2f}ms"),
        (f"GET /ai_bots throughput ({CONCURRENCY} in flight)", f"{rps:.0f} r/s"),
    ]
    print_rows("ai_bots: cold start and latency (gateway → index → PostgreSQL)", rows, label_width=46, value_width=12)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
