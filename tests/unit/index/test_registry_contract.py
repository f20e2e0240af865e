"""Every RPC of agents.registry.v1.Registry is implemented by the servicer."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.index.registry.servicer import RegistryServicer


def test_every_registry_rpc_is_implemented() -> None:
    methods = registry_pb2.DESCRIPTOR.services_by_name["Registry"].methods
    missing = [
        m.name
        for m in methods
        if getattr(RegistryServicer, m.name) is getattr(registry_pb2_grpc.RegistryServicer, m.name)
    ]
    assert missing == []
