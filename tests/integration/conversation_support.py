"""The world the conversation suites share: a cluster whose agents answer through a fake OpenAI
upstream, with helpers to make agents and channels and to find and await reply posts."""

from __future__ import annotations

from typing import Any

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common.identity import MANAGE_SYSTEM, Identity
from tests.fakes.mattermost.state import FakeChannel, FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.harness import ClusterHarness
from tests.polling import poll

# Gateway timings short enough for tests: agent refresh, patch throttle and claim sweeps.
FAST = {
    "AGENTS_GATEWAY_AGENTS_REFRESH_SECONDS": "0.2",
    "AGENTS_GATEWAY_PATCH_INTERVAL_SECONDS": "0.2",
    "AGENTS_GATEWAY_CLAIM_SWEEP_SECONDS": "0.5",
}


class World:
    """The module's cluster, the fake upstream, and a helper to make agents."""

    def __init__(self, harness: ClusterHarness, openai: FakeOpenAI) -> None:
        self.h = harness
        self.mm = harness.mattermost
        self.openai = openai
        self.admin = self.mm.add_user("root", roles="system_user system_admin")
        self.service_id = ""

    def md(self) -> list[tuple[str, str]]:
        return self.h.metadata(Identity(user_id=self.admin.id, permissions=frozenset({MANAGE_SYSTEM})))

    async def setup(self) -> None:
        service = registry_pb2.ServiceConfig(
            name="fake", type="openaicompatible", api_key=self.openai.api_key, api_url=self.openai.base_url
        )
        service.default_model = "gpt-4o"
        async with self.h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            reply = await registry.CreateService(registry_pb2.CreateServiceRequest(service=service), metadata=self.md())
        self.service_id = reply.service.id

    async def agent(self, username: str, *, sockets: int = 1, **fields: Any) -> FakeUser:
        """A new agent (its bot created by the registry); returns once the gateway replicas (one
        socket each) listen for it."""
        async with self.h.channel("index") as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            agent = registry_pb2.Agent(username=username, display_name=username.title(), service_id=self.service_id)
            for key, value in fields.items():
                setattr(agent, key, value)
            reply = await registry.CreateAgent(registry_pb2.CreateAgentRequest(agent=agent), metadata=self.md())
        await self.mm.wait_for_websockets(sockets, within=15, user_id=reply.agent.bot_user_id)
        bot = self.mm.state.users[reply.agent.bot_user_id]
        return FakeUser(bot["id"], bot["username"], "")

    def town(self, name: str, *users: FakeUser) -> FakeChannel:
        team = self.mm.add_team(f"{name}-team")
        channel = self.mm.add_channel(team.id, name)
        for user in users:
            self.mm.add_member(team, user)
            self.mm.add_member(channel, user)
        return channel

    def replies_to(self, post_id: str) -> list[dict[str, Any]]:
        return [
            p for p in self.mm.state.posts.values() if p["props"].get("responding_to") == post_id and not p["delete_at"]
        ]

    async def final(self, post_id: str, within: float = 20.0) -> dict[str, Any]:
        """The post once it is no longer streaming."""
        post = self.mm.post(post_id)
        await poll(lambda: post["props"].get("agents_stream_status") not in (None, "streaming"), within=within)
        return post

    async def answer_to(self, post: dict[str, Any], within: float = 20.0) -> dict[str, Any]:
        """The single reply to ``post``, once final."""
        [reply] = await poll(lambda: self.replies_to(post["id"]), within=within)
        return await self.final(reply["id"], within=within)

    def patches_of(self, post_id: str) -> list[Any]:
        return [r for r in self.mm.requests_to("PUT", f"/api/v4/posts/{post_id}/patch") if r.status == 200]

    def posts_with(self, message: str) -> list[dict[str, Any]]:
        return [p for p in self.mm.state.posts.values() if p["message"] == message]
