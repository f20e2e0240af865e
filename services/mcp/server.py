"""Wiring of the mcp service: health, reflection, the MCP API and the Mattermost MCP server.
The MCP API's remote-server features arrive with their issue; until then its RPCs answer
UNIMPLEMENTED."""

from __future__ import annotations

from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc

from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings
from services.mcp.embedded.process import EmbeddedServer
from services.mcp.settings import McpSettings


class McpProcess:
    """The mcp service wired: health, reflection, the MCP API (unimplemented for now) and the
    embedded Mattermost MCP server."""

    def __init__(self, settings: McpSettings) -> None:
        self.embedded = EmbeddedServer(settings)
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    mcp_pb2.DESCRIPTOR.services_by_name["MCP"].full_name,
                    # The generated base answers UNIMPLEMENTED to every RPC; its stub marks them abstract.
                    mcp_pb2_grpc.MCPServicer(),  # type: ignore[abstract]
                    mcp_pb2_grpc.add_MCPServicer_to_server,
                ),
                self.embedded.binding(),
            ],
        )

    async def prepare(self) -> None:
        """Start the embedded server."""
        await self.embedded.start()

    async def close(self) -> None:
        """Stop the embedded server."""
        await self.embedded.close()


async def create_server(settings: CommonSettings) -> McpProcess:
    """The mcp service for ``settings`` (``McpSettings``)."""
    assert isinstance(settings, McpSettings)
    return McpProcess(settings)
