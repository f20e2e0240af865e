"""The agents' bots and a Mattermost token for each, created at start and kept in memory only.

No bot secret is configured or stored anywhere: with the cluster's admin account the gateway
creates a personal access token per agent bot when it first needs it and revokes it when the bot
goes away or the gateway stops. Each replica holds its own tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.errors import DomainError
from services.common.grpc_client import unary
from services.common.identity import MANAGE_SYSTEM, Identity, current_identity
from services.common.mattermost import MattermostClient, UserAccessToken
from services.gateway.backends import Backends
from services.gateway.conversations.triggers import AgentBot

logger = logging.getLogger(__name__)

# The registry lists agents for management only to system admins; the gateway asks as one.
_ADMIN = Identity(permissions=frozenset({MANAGE_SYSTEM}), internal=True)


@dataclass(frozen=True)
class AgentDirectory:
    """The agents right now, and the plugin flags rendering needs."""

    agents: list[AgentBot]
    allow_unsafe_links: bool = False


async def load_agents(backends: Backends) -> AgentDirectory:
    """Every active agent, from the registry (management listing as a system admin)."""
    token = current_identity.set(_ADMIN)
    try:
        usable = await unary(backends.registry.ListUsableAgents, registry_pb2.ListUsableAgentsRequest())
        try:
            listed = list((await unary(backends.registry.ListAgents, registry_pb2.ListAgentsRequest())).agents)
        except DomainError as err:
            # Before the registry implements ListAgents, the usable list is the best view there is.
            logger.info("ListAgents unavailable; using ListUsableAgents", extra={"error": err.message})
            listed = list(usable.agents)
    finally:
        current_identity.reset(token)
    agents = [
        AgentBot(agent_id=a.id, username=a.username, bot_user_id=a.bot_user_id, display_name=a.display_name)
        for a in listed
        if a.bot_user_id and not a.delete_at
    ]
    return AgentDirectory(agents=agents, allow_unsafe_links=usable.allow_unsafe_links)


class BotTokens:
    """One personal access token per agent bot, created with the admin client."""

    def __init__(self, admin: MattermostClient, description: str) -> None:
        self.admin = admin
        self.description = description
        self._tokens: dict[str, UserAccessToken] = {}

    def __repr__(self) -> str:
        return f"BotTokens(bots={len(self._tokens)})"

    def get(self, bot_user_id: str) -> str | None:
        token = self._tokens.get(bot_user_id)
        return token.token if token else None

    async def ensure(self, bot_user_id: str) -> str:
        """The bot's token, created on first use."""
        existing = self._tokens.get(bot_user_id)
        if existing is not None:
            return existing.token
        created = await self.admin.create_user_access_token(bot_user_id, self.description)
        self._tokens[bot_user_id] = created
        logger.info("created an access token for an agent bot", extra={"bot_user_id": bot_user_id})
        return created.token

    async def revoke(self, bot_user_id: str) -> None:
        """Revoke and forget the bot's token (the bot is no longer an agent, or we stop)."""
        token = self._tokens.pop(bot_user_id, None)
        if token is None:
            return
        try:
            await self.admin.revoke_user_access_token(token.id)
        except DomainError as err:
            logger.warning(
                "revoking an agent bot token failed", extra={"bot_user_id": bot_user_id, "error": err.message}
            )

    async def revoke_all(self) -> None:
        for bot_user_id in list(self._tokens):
            await self.revoke(bot_user_id)
