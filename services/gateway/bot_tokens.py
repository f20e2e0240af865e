"""A Mattermost token per agent bot, kept in memory only, for its WebSocket and the posts it writes.

No bot secret is configured or stored anywhere: with the cluster's admin account the gateway
creates a personal access token for an agent bot when it first needs it and revokes it when the
bot goes away or the gateway stops. Each replica holds its own tokens.
"""

from __future__ import annotations

import logging

from services.common.errors import DomainError
from services.common.mattermost import MattermostClient, UserAccessToken

logger = logging.getLogger(__name__)


class BotTokens:
    """One personal access token per agent bot, created with the admin client."""

    def __init__(self, admin: MattermostClient, description: str) -> None:
        self.admin = admin
        self.description = description
        self._tokens: dict[str, UserAccessToken] = {}

    def __repr__(self) -> str:
        return f"BotTokens(bots={len(self._tokens)})"

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
        """Revoke every bot token this replica holds (on shutdown)."""
        for bot_user_id in list(self._tokens):
            await self.revoke(bot_user_id)
