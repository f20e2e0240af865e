"""A service's gRPC client retries an idempotent call that found its peer unavailable, unless its
settings leave retries to a proxy in between (``AGENTS_GRPC_CLIENT_RETRIES=false``): a call is
never retried by both."""

from __future__ import annotations

import pytest
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common import errors
from services.common.grpc_client import ChannelPool, idempotent, unary
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.settings import CommonSettings, load_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")
TOKEN = "cluster-secret"
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"]


class Unavailable(registry_pb2_grpc.RegistryServicer):
    def __init__(self) -> None:
        self.attempts = 0

    async def GetAgent(self, request, context):  # type: ignore[no-untyped-def]
        self.attempts += 1
        raise errors.UpstreamUnavailable("busy")


@pytest.mark.parametrize(("environ", "attempts"), [({}, 3), ({"AGENTS_GRPC_CLIENT_RETRIES": "false"}, 1)])
async def test_idempotent_calls_are_retried_by_the_client_unless_a_proxy_retries(
    environ: dict[str, str], attempts: int
) -> None:
    servicer = Unavailable()
    server_settings = CommonSettings(service_name="t", grpc_port=0, service_token=TOKEN, shutdown_grace_seconds=1)
    server = GrpcServiceHost(
        server_settings,
        [ServicerBinding(REGISTRY.full_name, servicer, registry_pb2_grpc.add_RegistryServicer_to_server)],
    )
    port = await server.start()
    await server.set_serving()
    client_settings = load_settings(
        CommonSettings, "AGENTS_T_", {**environ, "AGENTS_SERVICE_TOKEN": TOKEN}, service_name="t"
    )
    pool = ChannelPool.from_settings(client_settings)
    try:
        stub = registry_pb2_grpc.RegistryStub(pool.get(f"127.0.0.1:{port}", idempotent(REGISTRY)))
        with pytest.raises(errors.UpstreamUnavailable):
            await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
        assert servicer.attempts == attempts
    finally:
        await pool.close()
        await server.stop()
