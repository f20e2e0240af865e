"""Wiring of the index service: database, registry, servicers. No logic here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings
from services.index.registry.service import Registry
from services.index.registry.servicer import RegistryServicer
from services.index.registry.store import AgentStore, ConfigStore
from services.index.settings import IndexSettings

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_index"


@dataclass
class IndexDeps:
    engine: AsyncEngine


class IndexProcess:
    def __init__(self, settings: IndexSettings, deps: IndexDeps) -> None:
        self.settings = settings
        self.deps = deps
        registry = Registry(AgentStore(deps.engine), ConfigStore(deps.engine))
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
                    RegistryServicer(registry),
                    registry_pb2_grpc.add_RegistryServicer_to_server,
                ),
                ServicerBinding(
                    index_pb2.DESCRIPTOR.services_by_name["Index"].full_name,
                    index_pb2_grpc.IndexServicer(),  # semantic search arrives with its issue
                    index_pb2_grpc.add_IndexServicer_to_server,
                ),
            ],
        )

    async def prepare(self) -> None:
        await db.wait_for_database(self.deps.engine)
        await db.run_migrations(self.deps.engine, MIGRATIONS, VERSION_TABLE)

    async def close(self) -> None:
        await self.deps.engine.dispose()


async def create_server(settings: CommonSettings, deps: IndexDeps | None = None) -> IndexProcess:
    assert isinstance(settings, IndexSettings)
    deps = deps or IndexDeps(engine=db.create_engine(settings.database_url, pool_size=settings.db_pool_size))
    return IndexProcess(settings, deps)
