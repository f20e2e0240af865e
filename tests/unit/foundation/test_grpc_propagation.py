"""Identity, service credential, deadline and domain errors across two real gRPC hops."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.cluster.supervisor import free_port
from services.common import errors
from services.common.grpc_client import ChannelPool, unary
from services.common.grpc_server import GrpcServiceHost, ServicerBinding
from services.common.identity import SERVICE_TOKEN_KEY, Identity, current_identity, identity, remaining_seconds
from services.common.settings import CommonSettings
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")
TOKEN = "cluster-secret"
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name


@dataclass
class Seen:
    identities: list[Identity] = field(default_factory=list)
    remaining: list[float | None] = field(default_factory=list)


class Back(registry_pb2_grpc.RegistryServicer):
    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def GetAgent(self, request, context):  # type: ignore[no-untyped-def]
        self.seen.identities.append(identity())
        self.seen.remaining.append(remaining_seconds())
        if request.id == "missing":
            raise errors.NotFound("agent missing not found")
        if request.id == "boom":
            raise RuntimeError("secret internals")
        return registry_pb2.GetAgentResponse(agent=registry_pb2.Agent(id=request.id))


class Front(registry_pb2_grpc.RegistryServicer):
    """Forwards to Back through the shared client, as one service calls another."""

    def __init__(self, pool: ChannelPool, target: str) -> None:
        self.stub = registry_pb2_grpc.RegistryStub(pool.get(target))

    async def GetAgent(self, request, context):  # type: ignore[no-untyped-def]
        return await unary(self.stub.GetAgent, request)


def host(servicer: object) -> GrpcServiceHost:
    settings = CommonSettings(service_name="t", grpc_port=0, service_token=TOKEN, shutdown_grace_seconds=1)
    return GrpcServiceHost(
        settings, [ServicerBinding(REGISTRY, servicer, registry_pb2_grpc.add_RegistryServicer_to_server)]
    )


@pytest_asyncio.fixture(loop_scope="session")
async def chain() -> AsyncIterator[tuple[registry_pb2_grpc.RegistryStub, Seen]]:
    seen = Seen()
    back = host(Back(seen))
    back_port = await back.start()
    await back.set_serving()
    pool = ChannelPool(service_token=TOKEN, default_timeout=5)
    front = host(Front(pool, f"127.0.0.1:{back_port}"))
    front_port = await front.start()
    await front.set_serving()
    client_pool = ChannelPool(service_token=TOKEN, default_timeout=5)
    stub = registry_pb2_grpc.RegistryStub(client_pool.get(f"127.0.0.1:{front_port}"))
    yield stub, seen
    await client_pool.close()
    await pool.close()
    await front.stop()
    await back.stop()


async def test_the_caller_identity_reaches_the_second_hop(chain) -> None:
    stub, seen = chain
    token = current_identity.set(Identity(user_id="u1", permissions=frozenset({"manage_system"})))
    try:
        await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
    finally:
        current_identity.reset(token)
    assert seen.identities[-1].user_id == "u1"
    assert seen.identities[-1].is_system_admin
    assert seen.identities[-1].internal


async def test_the_deadline_shrinks_along_the_chain(chain) -> None:
    stub, seen = chain
    await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"), timeout=2.0)
    remaining = seen.remaining[-1]
    assert remaining is not None and 0 < remaining < 2.0


async def test_a_domain_error_two_hops_away_arrives_as_the_same_error(chain) -> None:
    stub, _ = chain
    with pytest.raises(errors.NotFound, match="agent missing not found"):
        await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="missing"))


async def test_an_unexpected_error_is_internal_without_its_details(chain) -> None:
    stub, _ = chain
    with pytest.raises(errors.DomainError) as err:
        await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="boom"))
    assert "secret internals" not in err.value.message
    assert err.value.message == "internal server error"


async def test_a_call_without_the_service_credential_is_unauthenticated() -> None:
    back = host(Back(Seen()))
    port = await back.start()
    await back.set_serving()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = registry_pb2_grpc.RegistryStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetAgent(registry_pb2.GetAgentRequest(id="a"), timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetAgent(
                    registry_pb2.GetAgentRequest(id="a"), metadata=[(SERVICE_TOKEN_KEY, "wrong")], timeout=2
                )
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await back.stop()


async def test_an_unimplemented_rpc_answers_unimplemented_not_internal(chain) -> None:
    stub, _ = chain
    with pytest.raises(errors.Unimplemented, match="not implemented"):
        await unary(stub.DeleteAgent, registry_pb2.DeleteAgentRequest(id="a"))


async def test_a_channel_that_dialed_a_peer_before_it_listened_recovers_within_seconds() -> None:
    port = free_port()
    pool = ChannelPool(service_token=TOKEN, default_timeout=1)
    stub = registry_pb2_grpc.RegistryStub(pool.get(f"127.0.0.1:{port}"))
    with pytest.raises(errors.UpstreamUnavailable):
        await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
    # Let the channel's failed attempts push its reconnect backoff up before the peer appears.
    for _ in range(3):
        with pytest.raises(errors.UpstreamUnavailable):
            await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
    settings = CommonSettings(service_name="t", grpc_port=port, service_token=TOKEN, shutdown_grace_seconds=1)
    late = GrpcServiceHost(
        settings, [ServicerBinding(REGISTRY, Back(Seen()), registry_pb2_grpc.add_RegistryServicer_to_server)]
    )
    await late.start()
    await late.set_serving()
    try:

        async def answered() -> bool:
            try:
                await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
            except errors.UpstreamUnavailable:
                return False
            return True

        await poll(answered, within=5, interval=0.05, message="channel stayed in reconnect backoff")
    finally:
        await pool.close()
        await late.stop()


async def test_a_server_refuses_a_port_another_listener_holds_instead_of_sharing_it() -> None:
    # The other listener allows sharing (as a worker group's does): the server must still not join it.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        settings = CommonSettings(
            service_name="t", grpc_port=other.getsockname()[1], service_token=TOKEN, shutdown_grace_seconds=1
        )
        clash = GrpcServiceHost(
            settings, [ServicerBinding(REGISTRY, Back(Seen()), registry_pb2_grpc.add_RegistryServicer_to_server)]
        )
        with pytest.raises(OSError, match="cannot bind"):
            await clash.start()
        await clash.stop()


async def test_calls_before_the_process_is_ready_are_unavailable_then_served() -> None:
    # The port opens before the process has loaded its state; a call served then would answer
    # from nothing (a replica's empty configuration reached every watcher during a rolling restart).
    seen = Seen()
    starting = host(Back(seen))
    port = await starting.start()
    pool = ChannelPool(service_token=TOKEN, default_timeout=2)
    stub = registry_pb2_grpc.RegistryStub(pool.get(f"127.0.0.1:{port}"))
    try:
        with pytest.raises(errors.UpstreamUnavailable, match="not ready"):
            await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
        assert seen.identities == []  # the servicer never ran
        await starting.set_serving()
        response = await unary(stub.GetAgent, registry_pb2.GetAgentRequest(id="a"))
        assert response.agent.id == "a"
    finally:
        await pool.close()
        await starting.stop()
