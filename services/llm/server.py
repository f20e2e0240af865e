"""Wiring of the llm service: provider sessions, the registry client, servicers. No logic here."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc

from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings


class LlmProcess:
    def __init__(self, settings: CommonSettings) -> None:
        self.host = GrpcServiceHost(
            settings,
            [
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["LLM"].full_name,
                    llm_pb2_grpc.LLMServicer(),
                    llm_pb2_grpc.add_LLMServicer_to_server,
                ),
                ServicerBinding(
                    llm_pb2.DESCRIPTOR.services_by_name["Conversations"].full_name,
                    llm_pb2_grpc.ConversationsServicer(),
                    llm_pb2_grpc.add_ConversationsServicer_to_server,
                ),
            ],
        )

    async def prepare(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def create_server(settings: CommonSettings) -> LlmProcess:
    return LlmProcess(settings)
