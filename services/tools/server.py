"""Wiring of the tools service. No logic here."""

from __future__ import annotations

from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc

from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings


class ToolsProcess:
    def __init__(self, settings: CommonSettings) -> None:
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    tools_pb2.DESCRIPTOR.services_by_name["Tools"].full_name,
                    tools_pb2_grpc.ToolsServicer(),
                    tools_pb2_grpc.add_ToolsServicer_to_server,
                )
            ],
        )

    async def prepare(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def create_server(settings: CommonSettings) -> ToolsProcess:
    return ToolsProcess(settings)
