"""The tools suite's world: the cluster, the fake search API, seeded Mattermost data, and calls
to the tools service as a user."""

from __future__ import annotations

import secrets
from typing import Any

import grpc
import pytest
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import json_format, struct_pb2

from services.common.identity import MANAGE_SYSTEM, Identity
from tests.fakes.listener import ConnectionCounter
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.search import FakeSearch
from tests.harness import ClusterHarness
from tests.harness import insert_agent as seed_agent
from tests.polling import poll

SEARCH_HOST = "127.0.0.2"


class World:
    """The module's cluster, fakes and seeded Mattermost data."""

    def __init__(self, harness: ClusterHarness, search: FakeSearch, counter: ConnectionCounter) -> None:
        self.h = harness
        self.search = search
        self.counter = counter
        mm = harness.mattermost
        self.admin = mm.add_user("root", roles="system_user system_admin")
        self.alice = mm.add_user("alice")
        self.bob = mm.add_user("bob")
        self.bot = mm.add_user("helper", is_bot=True)
        self.team = mm.add_team("eng", display_name="Engineering")
        for user in (self.alice, self.bob):
            mm.add_member(self.team, user)
        self.town = mm.add_channel(self.team.id, "town-square", display_name="Town Square")
        self.secret = mm.add_channel(self.team.id, "secret-plans", type="P", display_name="Secret Plans")
        mm.add_member(self.town, self.alice)
        mm.add_member(self.secret, self.bob)
        # The cluster's account searches with Mattermost's own search, which only sees channels it is in.
        assert harness.cluster_account is not None
        for channel in (self.town, self.secret):
            mm.add_member(channel, harness.cluster_account)
        self.dm = mm.add_direct_channel(self.alice, self.bot)
        self.agent_id = ""

    def stub(self) -> tools_pb2_grpc.ToolsStub:
        return tools_pb2_grpc.ToolsStub(self.h.channel("tools"))

    def md(self, user: FakeUser, *, admin: bool = False) -> list[tuple[str, str]]:
        perms = frozenset({MANAGE_SYSTEM}) if admin else frozenset()
        return self.h.metadata(Identity(user_id=user.id, permissions=perms))

    def context(self, user: FakeUser | None = None, **fields: Any) -> tools_pb2.ToolContext:
        user = user or self.alice
        values: dict[str, Any] = {
            "user_id": user.id,
            "agent_id": self.agent_id,
            "channel_id": self.dm.id,
            "team_id": self.team.id,
            "is_direct_message": True,
            "conversation_id": secrets.token_hex(8),
        }
        values.update(fields)
        return tools_pb2.ToolContext(**values)

    async def execute(
        self, tool: str, args: dict[str, Any], *, user: FakeUser | None = None, call_id: str = "", **ctx: Any
    ) -> tools_pb2.ExecuteToolResponse:
        arguments = struct_pb2.Struct()
        arguments.update(args)
        user = user or self.alice
        async with self.h.channel("tools") as channel:
            return await tools_pb2_grpc.ToolsStub(channel).ExecuteTool(
                tools_pb2.ExecuteToolRequest(
                    context=self.context(user, **ctx), tool_name=tool, arguments=arguments, tool_call_id=call_id
                ),
                metadata=self.md(user),
                timeout=20,
            )

    async def list_tools(self, user: FakeUser | None = None, **ctx: Any) -> list[tools_pb2.Tool]:
        user = user or self.alice
        async with self.h.channel("tools") as channel:
            reply = await tools_pb2_grpc.ToolsStub(channel).ListTools(
                tools_pb2.ListToolsRequest(context=self.context(user, **ctx)), metadata=self.md(user), timeout=10
            )
        return list(reply.tools)

    async def configure(self, **web: Any) -> None:
        """Push a plugin config and wait until the tools service acts on it.

        Web search is switched off first and on again: once web_search reappears in ListTools,
        the tools service holds this revision (revisions arrive in order).
        """
        allowed = web.pop("allowed", "")
        base: dict[str, Any] = {
            "services": [],
            "allowedUpstreamHostnames": allowed,
            "enableChannelMentionToolCalling": True,
        }
        if tool_configs := web.pop("tool_configs", None):
            base["mcp"] = {"embeddedServer": {"tool_configs": tool_configs}}
        await self._push({**base, "webSearch": {"enabled": False}})
        await self._until(lambda names: "web_search" not in names)
        provider = web.pop("provider", "brave")
        block = {
            "brave": {"apiKey": self.search.brave_key, "apiURL": f"{self.search.base_url}/res/v1/web/search"},
            "google": {
                "apiKey": self.search.google_key,
                "searchEngineId": self.search.google_cx,
                "apiURL": f"{self.search.base_url}/customsearch/v1",
            },
        }[provider]
        block.update(web.pop(provider, {}))
        await self._push(
            {**base, "webSearch": {"enabled": True, "provider": provider, provider: block, **web}},
        )
        await self._until(lambda names: "web_search" in names)

    async def _push(self, document: dict[str, Any]) -> None:
        config = json_format.ParseDict(document, registry_pb2.PluginConfig(), ignore_unknown_fields=True)
        async with self.h.channel("index") as channel:
            await registry_pb2_grpc.RegistryStub(channel).UpdatePluginConfig(
                registry_pb2.UpdatePluginConfigRequest(config=config), metadata=self.md(self.admin, admin=True)
            )

    async def _until(self, predicate: Any, within: float = 15.0) -> None:
        async def seen() -> bool:
            return bool(predicate({t.name for t in await self.list_tools()}))

        await poll(seen, within=within, interval=0.1, message="the tools service never saw the new plugin config")


async def insert_agent(database_url: str, bot: FakeUser, **columns: object) -> str:
    """An agent row for ``bot`` (see ``tests.harness.insert_agent``)."""
    return await seed_agent(database_url, bot.username, bot.id, **columns)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value
