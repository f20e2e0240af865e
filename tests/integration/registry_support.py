"""Shared set-up for the registry suites: a seed configuration file and calls as a user."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.grpc_client import create_channel
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.harness import ClusterHarness

OPENAI = {"id": "svc-openai", "name": "OpenAI", "type": "openai", "apiKey": "sk-openai-secret", "defaultModel": "gpt"}
ANTHROPIC = {"id": "svc-anthropic", "name": "Claude", "type": "anthropic", "apiKey": "sk-ant-secret"}


def seed_file(config: dict[str, Any]) -> str:
    path = Path(tempfile.mkdtemp(prefix="agents-seed-")) / "config.json"
    path.write_text(json.dumps({"config": config}))
    return str(path)


def system_registry(h: ClusterHarness) -> registry_pb2_grpc.RegistryStub:
    """The registry as an internal service sees it (service credential, no user)."""
    assert h.cluster is not None
    # Kept on the harness: a channel that only a stub references is closed when collected.
    channel = getattr(h, "_system_registry_channel", None)
    if channel is None:
        channel = create_channel(h.cluster.address("index"), service_token=h.cluster.config.service_token)
        h._system_registry_channel = channel  # type: ignore[attr-defined]
    return registry_pb2_grpc.RegistryStub(channel)


async def call(
    h: ClusterHarness, method: str, path: str, template: str, user: FakeUser, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    """A plugin route called as ``user``, its response checked against plugin-openapi.yaml."""
    status, payload, headers = await h.request(method, path, user=user, json_body=body)
    assert_matches_openapi(method, template, status, payload)
    return status, payload, headers


async def bridge_agent(h: ClusterHarness, fake: FakeOpenAI, username: str = "helper") -> None:
    """A service on ``fake`` and an agent ``username`` using it, for bridge completions."""
    admin = Identity(user_id="", permissions=frozenset({MANAGE_SYSTEM}))
    async with h.channel("index") as channel:
        registry = registry_pb2_grpc.RegistryStub(channel)
        config = registry_pb2.ServiceConfig(
            name="fake-openai",
            type="openaicompatible",
            api_key=fake.api_key,
            api_url=fake.base_url,
            default_model="gpt-4o",
        )
        service = await registry.CreateService(
            registry_pb2.CreateServiceRequest(service=config), metadata=h.metadata(admin), timeout=10
        )
        agent = registry_pb2.Agent(username=username, display_name=username.title(), service_id=service.service.id)
        await registry.CreateAgent(registry_pb2.CreateAgentRequest(agent=agent), metadata=h.metadata(admin), timeout=10)
