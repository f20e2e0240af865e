"""The Mattermost side of agents: bot accounts and the directory the access lists name.

Talks to Mattermost over REST v4 with the cluster's own (system admin) account."""

from __future__ import annotations

import logging

from services.common.errors import AlreadyExists, InvalidInput, NotFound
from services.common.mattermost import MattermostClient, User

logger = logging.getLogger(__name__)


class BotAccounts:
    """Agents' bot accounts in Mattermost, and the directory lookups their access lists need."""

    def __init__(self, mattermost: MattermostClient) -> None:
        self.mattermost = mattermost

    async def account(self, username: str) -> User | None:
        """The Mattermost account (user or bot, active or not) that has the username, if any."""
        try:
            return await self.mattermost.get_user_by_username(username)
        except NotFound:
            return None

    async def create(self, username: str, display_name: str) -> str:
        """Create the agent's bot account; its user id."""
        try:
            bot = await self.mattermost.create_bot(username, display_name, "AI agent managed by Mattermost Agents")
        except InvalidInput as err:
            if "exist" in err.message.lower():
                raise AlreadyExists(f"username {username} is taken in Mattermost") from None
            raise
        return bot.user_id

    async def reactivate(self, bot_user_id: str, display_name: str) -> None:
        """Enable a disabled bot again under the display name of the agent that takes it over."""
        await self.mattermost.enable_bot(bot_user_id)
        await self.rename(bot_user_id, display_name)

    async def rename(self, bot_user_id: str, display_name: str) -> None:
        """Give the bot its agent's display name."""
        await self.mattermost.patch_bot(bot_user_id, display_name=display_name)

    async def disable(self, bot_user_id: str) -> None:
        """Deactivate the agent's bot; one Mattermost no longer has is already as good as disabled
        (deleted by an admin, or a Mattermost that was reset) and must not keep its agent alive."""
        try:
            await self.mattermost.disable_bot(bot_user_id)
        except NotFound:
            logger.info("agent bot not found in Mattermost; nothing to disable", extra={"bot_user_id": bot_user_id})

    async def set_image(self, bot_user_id: str, image: bytes, filename: str) -> None:
        """Set the bot's profile image."""
        await self.mattermost.set_profile_image(bot_user_id, image, filename)

    async def user_id_of(self, username: str) -> str:
        """The id of an existing account, or "" (legacy bots already have their accounts)."""
        account = await self.account(username)
        return account.id if account else ""

    async def user_team_ids(self, user_id: str) -> set[str]:
        """Ids of the teams the user belongs to (for agents' team rules)."""
        return {t.id for t in await self.mattermost.get_user_teams(user_id)}

    async def check_ids_exist(
        self, *, user_ids: dict[str, tuple[str, ...]], channel_ids: tuple[str, ...], team_ids: tuple[str, ...]
    ) -> None:
        """InvalidInput naming the field whose list has an id Mattermost does not know."""
        for field, ids in user_ids.items():
            if not ids:
                continue
            found = {u.id for u in await self.mattermost.get_users_by_ids(list(dict.fromkeys(ids)))}
            missing = [i for i in ids if i not in found]
            if missing:
                raise InvalidInput(f"{field} names unknown user {missing[0]}", field=field)
        for channel_id in dict.fromkeys(channel_ids):
            try:
                await self.mattermost.get_channel(channel_id)
            except NotFound:
                raise InvalidInput(f"channelIDs names unknown channel {channel_id}", field="channelIDs") from None
        for team_id in dict.fromkeys(team_ids):
            try:
                await self.mattermost.get_team(team_id)
            except NotFound:
                raise InvalidInput(f"teamIDs names unknown team {team_id}", field="teamIDs") from None
