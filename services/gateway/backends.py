"""gRPC stubs of every backend service, over one channel per target."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.mcp.v1 import embedded_server_pb2_grpc as embedded_server_pb2_grpc
from agents.mcp.v1 import mcp_pb2 as mcp_pb2
from agents.mcp.v1 import mcp_pb2_grpc as mcp_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc

from services.common.grpc_client import ChannelPool, idempotent, stream
from services.common.settings import CommonSettings


class Backends:
    """The gateway's stubs of the registry, index, llm, conversations, tools and mcp services."""

    def __init__(self, settings: CommonSettings) -> None:
        self.pool = ChannelPool.from_settings(settings)
        registry = registry_pb2.DESCRIPTOR.services_by_name["Registry"]
        index = index_pb2.DESCRIPTOR.services_by_name["Index"]
        index_channel = self.pool.get(settings.index_addr, [*idempotent(registry), *idempotent(index)])
        self.registry = registry_pb2_grpc.RegistryStub(index_channel)
        self.index = index_pb2_grpc.IndexStub(index_channel)
        llm_service = llm_pb2.DESCRIPTOR.services_by_name["LLM"]
        conversations = llm_pb2.DESCRIPTOR.services_by_name["Conversations"]
        llm_channel = self.pool.get(settings.llm_addr, [*idempotent(llm_service), *idempotent(conversations)])
        self.llm = llm_pb2_grpc.LLMStub(llm_channel)
        self.conversations = llm_pb2_grpc.ConversationsStub(llm_channel)
        tools = tools_pb2.DESCRIPTOR.services_by_name["Tools"]
        self.tools = tools_pb2_grpc.ToolsStub(self.pool.get(settings.tools_addr, idempotent(tools)))
        mcp = mcp_pb2.DESCRIPTOR.services_by_name["MCP"]
        self.mcp = mcp_pb2_grpc.MCPStub(self.pool.get(settings.mcp_addr, idempotent(mcp)))
        # The Mattermost MCP server's HTTP exchanges: never retried (a tools/call may write).
        self.mcp_embedded = embedded_server_pb2_grpc.EmbeddedServerStub(self.pool.get(settings.mcp_addr))

    async def close(self) -> None:
        """Close every channel."""
        await self.pool.close()


async def conversation_events(
    call: Callable[..., Any], request: Any, **kwargs: Any
) -> AsyncGenerator[llm_pb2.ConversationEvent, None]:
    """The events of a streaming Conversations RPC (each response message wraps one event)."""
    async for response in stream(call, request, **kwargs):
        yield response.event


async def completion_events(
    call: Callable[..., Any], request: llm_pb2.StreamCompleteRequest, post_id: str, **kwargs: Any
) -> AsyncIterator[llm_pb2.ConversationEvent]:
    """The events of LLM.StreamComplete as a turn's, written into the post ``post_id``: a
    completion outside any conversation (a search's answer) renders like a turn."""
    async for response in stream(call, request, **kwargs):
        for event in response.events:
            yield llm_pb2.ConversationEvent(post_id=post_id, stream=event)
