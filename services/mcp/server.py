"""Wiring of the mcp service. Its features (remote servers, OAuth, the embedded Mattermost MCP
server) arrive with their issue; until then it serves health, reflection and the MCP API, whose
RPCs answer UNIMPLEMENTED."""

from __future__ import annotations

from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc

from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings


class McpProcess:
    """The mcp service wired: health, reflection and the MCP API, unimplemented for now."""

    def __init__(self, settings: CommonSettings) -> None:
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    mcp_pb2.DESCRIPTOR.services_by_name["MCP"].full_name,
                    # The generated base answers UNIMPLEMENTED to every RPC; its stub marks them abstract.
                    mcp_pb2_grpc.MCPServicer(),  # type: ignore[abstract]
                    mcp_pb2_grpc.add_MCPServicer_to_server,
                )
            ],
        )

    async def prepare(self) -> None:
        """Nothing to wait for yet."""
        return None

    async def close(self) -> None:
        """Nothing to release yet."""
        return None


async def create_server(settings: CommonSettings) -> McpProcess:
    """The mcp service for ``settings``."""
    return McpProcess(settings)
