"""Agent lifecycle: create (with its Mattermost bot), edit, delete, list, avatar, access checks."""

from __future__ import annotations

import dataclasses
import logging

from services.common.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from services.common.identity import Identity
from services.index.registry import agent_rules
from services.index.registry.active_agents import ActiveAgents
from services.index.registry.agents import (
    AccessDecision,
    AccessLevel,
    Agent,
    McpToolRef,
    check_access,
    check_user_access,
    usable_agents,
)
from services.index.registry.bot_accounts import BotAccounts
from services.index.registry.callers import is_system
from services.index.registry.config_registry import ConfigRegistry
from services.index.registry.config_store import new_id, now_ms
from services.index.registry.store import AgentStore

logger = logging.getLogger(__name__)

MAX_AVATAR_BYTES = 10 * 1024 * 1024


def _needs_teams(agent: Agent) -> bool:
    return bool(agent.team_ids) and agent.user_access_level in (AccessLevel.ALLOW, AccessLevel.BLOCK)


class AgentRegistry:
    """Agents as callers see and change them: permissions, validation, license gates and bot accounts."""

    def __init__(self, store: AgentStore, active: ActiveAgents, config: ConfigRegistry, bots: BotAccounts) -> None:
        self.store = store
        self.active = active
        self.config = config
        self.bots = bots

    # ---- reads ------------------------------------------------------------------------------

    async def _visible(self, caller: Identity, agent: Agent, teams: dict[str, set[str]]) -> bool:
        if is_system(caller) or agent_rules.can_manage(caller, agent):
            return True
        if _needs_teams(agent) and caller.user_id not in teams:
            teams[caller.user_id] = await self.bots.user_team_ids(caller.user_id)
        return check_user_access(agent, caller.user_id, teams.get(caller.user_id, set())).allowed

    async def list_for(
        self, caller: Identity, *, usable_by: str = "", user_team_ids: frozenset[str] = frozenset()
    ) -> tuple[list[tuple[Agent, bool]], int]:
        """(agent, caller manages it) for every agent the caller may see, of those only the ones
        user ``usable_by`` (in ``user_team_ids``) may use when it is set, and the active count."""
        agents = await self.store.list_active()
        listed = [a for a in agents if not usable_by or check_user_access(a, usable_by, user_team_ids).allowed]
        teams: dict[str, set[str]] = {}
        visible = [(a, agent_rules.can_manage(caller, a)) for a in listed if await self._visible(caller, a, teams)]
        return visible, len(agents)

    async def usable(self, user_id: str, user_team_ids: set[str], channel_id: str, default: str) -> list[Agent]:
        """Agents ``user_id`` may use in the channel, default first (the in-process list: the hot path)."""
        return usable_agents(await self.active.list(), user_id, user_team_ids, channel_id, default)

    async def get(
        self, caller: Identity, *, id: str = "", username: str = "", bot_user_id: str = ""
    ) -> tuple[Agent, bool]:
        """The agent and whether the caller manages it; NotFound when missing or not visible (the
        in-process list: every answer looks its agent up)."""
        agent = await self.active.get(id=id, username=username, bot_user_id=bot_user_id)
        if agent is None or not await self._visible(caller, agent, {}):
            raise NotFound(f"agent {id or username or bot_user_id} not found")
        return agent, agent_rules.can_manage(caller, agent)

    async def check_access(
        self, agent_id: str, user_id: str, channel_id: str, *, is_direct_message: bool, user_team_ids: set[str]
    ) -> AccessDecision:
        """Whether the user may use the agent in the channel; NotFound for an unknown agent."""
        agent = await self.active.get(id=agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id} not found")
        return check_access(agent, user_id, user_team_ids, channel_id, is_direct_message=is_direct_message)

    # ---- writes -----------------------------------------------------------------------------

    async def _service_of(self, agent: Agent) -> tuple[str, bool]:
        if not agent.service_id:
            raise InvalidInput("serviceID is required", field="serviceID")
        service = await self.config.find_service(agent.service_id)
        if service is None:
            raise InvalidInput(f"serviceID {agent.service_id} names no configured service", field="serviceID")
        return str(service.get("type", "")), bool(service.get("useResponsesAPI", False))

    async def _check_directory(self, agent: Agent) -> None:
        await self.bots.check_ids_exist(
            user_ids={"userIDs": agent.user_ids, "adminUserIDs": agent.admin_user_ids},
            channel_ids=agent.channel_ids,
            team_ids=agent.team_ids,
        )

    async def create(self, caller: Identity, agent: Agent, defaulted: set[str]) -> Agent:
        """Create the agent with its bot account; ``defaulted`` names the fields the client left out."""
        agent_rules.require_create(caller)
        agent_rules.validate_username(agent.username)
        service_type, responses = await self._service_of(agent)
        agent = agent_rules.apply_create_defaults(agent, service_type, responses, defaulted)
        admins = (
            tuple(dict.fromkeys([caller.user_id, *agent.admin_user_ids])) if caller.user_id else agent.admin_user_ids
        )
        now = now_ms()
        agent = dataclasses.replace(
            agent,
            id=new_id(),
            creator_id=caller.user_id,
            admin_user_ids=admins,
            create_at=now,
            update_at=now,
            delete_at=0,
            last_icon_update=0,
        )
        agent_rules.validate_agent(agent, service_type)
        agent_rules.check_agent_license(agent, self.config.license, 0, creating=False)
        await self._check_directory(agent)
        bot_user_id = ""
        try:
            # Under the creation lock: two creations racing on an unlicensed cluster (any replicas)
            # count one after the other, so the free tier's single agent cannot become two.
            async with self.store.creating() as conn:
                agent_rules.check_agent_license(
                    agent, self.config.license, await self.store.count_active(conn), creating=True
                )
                if await self.store.get(username=agent.username) is not None:
                    raise AlreadyExists(f"username {agent.username} is already taken")
                bot_user_id = await self._bot_for(agent)
                agent = dataclasses.replace(agent, bot_user_id=bot_user_id)
                await self.store.insert(agent, conn=conn)
        except BaseException:
            if bot_user_id:
                # Leave no orphan bot behind when the row cannot be written.
                logger.warning("agent row not written; deactivating its new bot", extra={"agent": agent.username})
                await self.bots.disable(bot_user_id)
            raise
        logger.info("agent created", extra={"agent_id": agent.id, "agent": agent.username})
        return agent

    async def _bot_for(self, agent: Agent) -> str:
        """A new bot for the agent, or the one a deleted agent left behind under its username:
        deleting an agent only disables its bot, which keeps holding the username in Mattermost."""
        account = await self.bots.account(agent.username)
        if account is None:
            return await self.bots.create(agent.username, agent.display_name)
        if account.is_bot and not account.is_active and await self.store.had_bot(account.id):
            await self.bots.reactivate(account.id, agent.display_name)
            logger.info("reactivated a deleted agent's bot", extra={"agent": agent.username})
            return account.id
        raise AlreadyExists(f"username {agent.username} is already taken")

    async def update(
        self,
        caller: Identity,
        incoming: Agent,
        *,
        expected_update_at: int = 0,
        available_tools: tuple[McpToolRef, ...] = (),
    ) -> tuple[Agent, tuple[McpToolRef, ...]]:
        """Full replace of the mutable fields; (agent, MCP tools dropped as no longer available)."""
        async with self.store.locked(incoming.id) as (conn, current):
            if current is None:
                raise NotFound(f"agent {incoming.id} not found")
            agent_rules.require_manage(caller, current)
            if expected_update_at and expected_update_at != current.update_at:
                raise Conflict(f"agent {current.username} was changed by someone else; reload and try again")
            if incoming.username and incoming.username != current.username:
                raise InvalidInput("username cannot be changed after the agent is created", field="username")
            service_type, _ = await self._service_of(incoming)
            kept, dropped = agent_rules.drop_unavailable_tools(incoming.enabled_mcp_tools, available_tools)
            admins = incoming.admin_user_ids
            if current.creator_id and current.creator_id not in admins:
                admins = (current.creator_id, *admins)  # the creator is always an agent admin
            agent = dataclasses.replace(
                incoming,
                username=current.username,
                bot_user_id=current.bot_user_id,
                creator_id=current.creator_id,
                admin_user_ids=admins,
                enabled_mcp_tools=kept,
                create_at=current.create_at,
                update_at=max(now_ms(), current.update_at + 1),
                delete_at=0,
                last_icon_update=current.last_icon_update,
            )
            agent_rules.validate_agent(agent, service_type)
            agent_rules.check_agent_license(agent, self.config.license, 0, creating=False)
            await self._check_directory(agent)
            await self.store.replace(conn, agent)
            if agent.display_name != current.display_name:
                # Inside the transaction: if Mattermost refuses, the row change is rolled back too.
                await self.bots.rename(agent.bot_user_id, agent.display_name)
        return agent, dropped

    async def delete(self, caller: Identity, agent_id: str) -> None:
        """Soft-delete the agent and deactivate its bot (the bot keeps its username)."""
        async with self.store.locked(agent_id) as (conn, current):
            if current is None:
                raise NotFound(f"agent {agent_id} not found")
            agent_rules.require_manage(caller, current)
            now = now_ms()
            await self.store.replace(conn, dataclasses.replace(current, delete_at=now, update_at=now))
            await self.bots.disable(current.bot_user_id)
        logger.info("agent deleted", extra={"agent_id": agent_id})

    async def set_avatar(self, caller: Identity, agent_id: str, image: bytes, filename: str) -> Agent:
        """Set the profile image of the agent's bot and record when it changed."""
        if not image:
            raise InvalidInput("image is required", field="image")
        if len(image) > MAX_AVATAR_BYTES:
            raise InvalidInput("image is larger than 10 MB", field="image")
        async with self.store.locked(agent_id) as (conn, current):
            if current is None:
                raise NotFound(f"agent {agent_id} not found")
            agent_rules.require_manage(caller, current)
            await self.bots.set_image(current.bot_user_id, image, filename or "avatar.png")
            now = now_ms()
            agent = dataclasses.replace(current, last_icon_update=now, update_at=max(now, current.update_at + 1))
            await self.store.replace(conn, agent)
        return agent
