"""The world the gRPC-level conversation suites share: the llm and index as real processes, a fake
OpenAI-compatible upstream, a fake Mattermost and a fake Tools server (real gRPC), with helpers to
make agents and DMs and to read the events of a Conversations stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.llm.v1 import llm_pb2_grpc as llm_pb2_grpc
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.identity import Identity
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.tools_grpc import FakeTools
from tests.harness import ClusterHarness, SessionPostgres


class World:
    """The module's cluster plus the fakes and one agent to talk to."""

    def __init__(self, harness: ClusterHarness, openai: FakeOpenAI, tools: FakeTools) -> None:
        self.h = harness
        self.openai = openai
        self.tools = tools
        self.mm = harness.mattermost
        self.admin = self.mm.add_user("admin", roles="system_user system_admin")
        self.service_id = ""
        self.channel = harness.channel("llm")
        self.conversations = llm_pb2_grpc.ConversationsStub(self.channel)

    async def setup(self) -> None:
        async with self.h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            service = registry_pb2.ServiceConfig(
                name="fake", type="openaicompatible", api_key=self.openai.api_key, api_url=self.openai.base_url
            )
            service.default_model = "gpt-4o"
            reply = await registry.CreateService(
                registry_pb2.CreateServiceRequest(service=service), metadata=self.md(self.admin, admin=True)
            )
            self.service_id = reply.service.id

    async def agent(self, username: str, **fields: Any) -> registry_pb2.Agent:
        async with self.h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            agent = registry_pb2.Agent(
                username=username, display_name=username.title(), service_id=self.service_id, **fields
            )
            reply = await registry.CreateAgent(
                registry_pb2.CreateAgentRequest(agent=agent), metadata=self.md(self.admin, admin=True)
            )
            return reply.agent

    def md(self, user: FakeUser, *, admin: bool = False) -> list[tuple[str, str]]:
        perms = frozenset({"manage_system"}) if admin else frozenset()
        return self.h.metadata(Identity(user_id=user.id, permissions=perms))

    def dm(
        self, user: FakeUser, agent: registry_pb2.Agent, message: str, **kw: Any
    ) -> tuple[llm_pb2.RespondRequest, dict]:
        bot = self.mm.state.users[agent.bot_user_id]
        bot_user = FakeUser(bot["id"], bot["username"], "")
        channel = self.mm.add_direct_channel(user, bot_user)
        post = self.mm.add_post(user, channel, message, **kw)
        reply = self.mm.state.create_post(bot["id"], channel.id, "", root_id=post["id"])
        request = llm_pb2.RespondRequest(
            context=llm_pb2.ConversationContext(
                user_id=user.id,
                agent_id=agent.id,
                channel_id=channel.id,
                is_direct_message=True,
                user_timezone="Europe/Berlin",
            ),
            post_id=post["id"],
            message=message,
            file_ids=list(kw.get("file_ids") or []),
            response_post_id=reply["id"],
        )
        return request, post


async def collect(call: Any) -> list[llm_pb2.ConversationEvent]:
    """The events of a streaming Conversations call (each response wraps one event)."""
    return [response.event async for response in call]


def text_of(events: list[llm_pb2.ConversationEvent]) -> str:
    return "".join(e.stream.text_delta.text for e in events if e.WhichOneof("event") == "stream")


def kinds(events: list[llm_pb2.ConversationEvent]) -> list[str]:
    out = []
    for e in events:
        kind = e.WhichOneof("event")
        out.append(e.stream.WhichOneof("event") if kind == "stream" else kind)
    return out


def done_reason(events: list[llm_pb2.ConversationEvent]) -> int:
    assert events[-1].stream.WhichOneof("event") == "done"
    return events[-1].stream.done.stop_reason


@contextlib.asynccontextmanager
async def started_world(postgres: SessionPostgres, **harness: Any) -> AsyncIterator[World]:
    """A cluster (enterprise license) whose llm calls the fake Tools server, set up with one service;
    ``harness`` passes on to ``ClusterHarness``."""
    async with FakeOpenAI() as openai:
        tools = await FakeTools().start()
        try:
            env = {"AGENTS_LLM_TOOLS_ADDR": tools.address, "AGENTS_INDEX_LICENSE": "enterprise"}
            async with ClusterHarness(postgres, env=env, **harness) as cluster:
                w = World(cluster, openai, tools)
                await w.setup()
                yield w
                await w.channel.close()
        finally:
            await tools.stop()
