"""Wiring of the mcp service. Its features (remote servers, OAuth, the embedded Mattermost MCP
server) arrive with their issue; until then it serves health, reflection and the MCP API, whose
RPCs answer UNIMPLEMENTED, and follows the plugin configuration for its debug logging switch."""

from __future__ import annotations

from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.grpc_client import ChannelPool, idempotent
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.plugin_config import PluginConfigWatcher, follow_debug_logging
from services.common.settings import CommonSettings


class McpProcess:
    """The mcp service wired: health, reflection and the MCP API, unimplemented for now."""

    def __init__(self, settings: CommonSettings) -> None:
        self.channels = ChannelPool(service_token=settings.service_token, default_timeout=settings.rpc_timeout_seconds)
        registry_service = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
        registry = registry_pb2_grpc.RegistryStub(self.channels.get(settings.index_addr, idempotent(registry_service)))
        self.config = PluginConfigWatcher(registry)
        follow_debug_logging(self.config)
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
        """Start following the plugin configuration (returns at once: nothing else waits on it)."""
        await self.config.start()

    async def close(self) -> None:
        """Stop following the configuration and close the registry channel."""
        await self.config.close()
        await self.channels.close()


async def create_server(settings: CommonSettings) -> McpProcess:
    """The mcp service for ``settings``."""
    return McpProcess(settings)
