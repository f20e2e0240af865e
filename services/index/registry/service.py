"""The registry's domain operations (no gRPC here): what the servicer calls."""

from __future__ import annotations

from services.common.errors import NotFound
from services.common.identity import Identity
from services.index.registry.agents import AccessDecision, Agent, check_access, usable_agents
from services.index.registry.store import AgentStore, ConfigStore


class Registry:
    def __init__(self, agents: AgentStore, config: ConfigStore) -> None:
        self.agents = agents
        self.config = config

    async def default_agent_username(self) -> str:
        active = await self.config.active()
        return str(active[1].get("defaultBotName", "")) if active else ""

    async def usable_agents(
        self, caller: Identity, channel_id: str, user_team_ids: set[str]
    ) -> tuple[list[Agent], str]:
        default = await self.default_agent_username()
        agents = await self.agents.list_active()
        return usable_agents(agents, caller.user_id, user_team_ids, channel_id, default), default

    async def get_agent(self, *, id: str = "", username: str = "", bot_user_id: str = "") -> Agent:
        agent = await self.agents.get(id=id, username=username, bot_user_id=bot_user_id)
        if agent is None:
            raise NotFound(f"agent {id or username or bot_user_id} not found")
        return agent

    async def check_access(
        self, agent_id: str, user_id: str, channel_id: str, *, is_direct_message: bool, user_team_ids: set[str]
    ) -> AccessDecision:
        agent = await self.get_agent(id=agent_id)
        return check_access(agent, user_id, user_team_ids, channel_id, is_direct_message=is_direct_message)
