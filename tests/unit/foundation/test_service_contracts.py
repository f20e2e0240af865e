"""Every RPC of every served API is implemented, except those whose issue has not landed yet.

The pending list is checked in both directions: an RPC missing from the servicer fails the test
unless it is listed, and a listed RPC that got implemented fails it too, so the list stays true.
"""

from __future__ import annotations

import importlib

import pytest

from services.common.grpc_server import ServicerBinding

# Whole services or single RPCs (``package.Service/Method``) whose feature arrives with a later issue.
PENDING: dict[str, str] = {
    **{
        f"agents.mcp.v1.MCP/{rpc}": "remote servers are configured in the plugin configuration"
        for rpc in ("ListServers", "GetServer", "CreateServer", "UpdateServer", "DeleteServer")
    },
}

SERVICES = ["index", "llm", "tools", "mcp"]


async def bindings_of(name: str) -> list[ServicerBinding]:
    settings_module = importlib.import_module(f"services.{name}.settings")
    server_module = importlib.import_module(f"services.{name}.server")
    settings = settings_module.load({"DATABASE_URL": "postgresql://contract-test/unused"})
    process = await server_module.create_server(settings)
    try:
        return process.host.bindings
    finally:
        await process.close()


def missing_rpcs(binding: ServicerBinding) -> list[str]:
    generated = type(binding.servicer).__mro__
    base = next(c for c in generated if c.__module__.endswith("_pb2_grpc"))
    service = binding.full_name
    methods = (
        importlib.import_module(base.__module__.replace("_pb2_grpc", "_pb2"))
        .DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
        .methods
    )
    return [f"{service}/{m.name}" for m in methods if getattr(type(binding.servicer), m.name) is getattr(base, m.name)]


@pytest.mark.parametrize("name", SERVICES)
async def test_every_rpc_is_implemented_or_explicitly_pending(name: str) -> None:
    for binding in await bindings_of(name):
        missing = missing_rpcs(binding)
        if binding.full_name in PENDING:
            assert missing, f"{binding.full_name} is fully implemented: remove it from PENDING"
            continue
        unexpected = [m for m in missing if m not in PENDING]
        assert not unexpected, f"RPCs neither implemented nor pending: {unexpected}"
        stale = [m for m in PENDING if m.startswith(binding.full_name + "/") and m not in missing]
        assert not stale, f"implemented RPCs still listed as pending: {stale}"
