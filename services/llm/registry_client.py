"""Service settings from the registry (``Registry.GetServiceCredentials``) for the catalog."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.grpc_client import unary
from services.common.identity import SYSTEM, current_identity
from services.llm.completion_proto import service_settings_from_proto
from services.llm.providers.base import ServiceSettings


class RegistryServiceSource:
    """Reads a service with its secrets. The call is made as the cluster itself (service
    credential, no user): the registry refuses this RPC to user calls, and the user a completion
    runs for has no business reading provider keys anyway."""

    def __init__(self, stub: registry_pb2_grpc.RegistryAsyncStub) -> None:
        self._stub = stub

    async def service_settings(self, service_id: str) -> ServiceSettings:
        """The service's settings with its secrets; the registry's NotFound for an unknown id."""
        token = current_identity.set(SYSTEM)
        try:
            reply = await unary(
                self._stub.GetServiceCredentials, registry_pb2.GetServiceCredentialsRequest(id=service_id)
            )
        finally:
            current_identity.reset(token)
        return service_settings_from_proto(reply.service)
