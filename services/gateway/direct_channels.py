"""The DM channel between a caller and each agent bot, found without creating one.

GET /ai_bots answers ``dmChannelID`` per bot: the id of the existing DM between the caller and the
bot, "" when there is none, and never a side effect (the plugin's rule; ``POST /channels/direct``
would create it). Mattermost names a DM ``<id>__<id>`` with the two user ids sorted, and
``GET /users/{user_id}/channels`` lists the user's channels on every team, DMs included, so one
read per user answers for every bot; it is reused for a few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from services.common.errors import DomainError
from services.common.mattermost import Channel, MattermostClient
from services.common.ttl_cache import TtlCache

logger = logging.getLogger(__name__)


def dm_partners(user_id: str, channels: Iterable[Channel]) -> dict[str, str]:
    """Other user id → id of the DM channel ``user_id`` shares with them."""
    partners: dict[str, str] = {}
    for channel in channels:
        if not channel.is_direct or channel.delete_at:
            continue
        first, sep, second = channel.name.partition("__")
        if not sep:
            continue
        if first == user_id:
            partners[second] = channel.id
        elif second == user_id:
            partners[first] = channel.id
    return partners


class DirectChannels:
    """Read-only lookups of a user's DM channels, cached per user for ``ttl`` seconds."""

    def __init__(self, mattermost: MattermostClient, ttl: float) -> None:
        self._mattermost = mattermost
        self._cache: TtlCache[str, dict[str, str]] = TtlCache(ttl)

    async def partners_of(self, user_id: str) -> dict[str, str]:
        """Other user id → DM channel id for ``user_id``; empty when Mattermost cannot say.

        A failed lookup only costs the caller a shortcut (the webapp opens the DM by name), so it
        is logged and answered empty rather than failing the listing; it is not cached.
        """
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        try:
            channels = await self._mattermost.get_all_channels_for_user(user_id)
        except DomainError as err:
            logger.warning("DM channel lookup failed; dmChannelID left empty", extra={"error": err.message})
            return {}
        partners = dm_partners(user_id, channels)
        self._cache.put(user_id, partners)
        return partners
