"""What route handlers need, built once by the server and stored on the app."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from services.common.mattermost import MattermostClient
from services.common.plugin_config import PluginConfigWatcher
from services.common.ttl_cache import TtlCache
from services.gateway.agent_directory import AgentDirectory
from services.gateway.auth import Authenticator
from services.gateway.backends import Backends
from services.gateway.bot_tokens import BotTokens
from services.gateway.bridge.agents import BridgeAgents, registry_lookup
from services.gateway.direct_channels import DirectChannels
from services.gateway.replies import ReplyService
from services.gateway.settings import GatewaySettings


@dataclass
class GatewayDeps:
    """The clients, caches and services one gateway process shares between its routes and its
    conversation side."""

    settings: GatewaySettings
    http: aiohttp.ClientSession
    mattermost: MattermostClient
    backends: Backends
    authenticator: Authenticator
    # The plugin configuration and the cluster's license (license and channel tool-calling guards).
    plugin_config: PluginConfigWatcher
    # This replica's name in post claims and bot token descriptions.
    replica_id: str
    # A token per agent bot, for its socket and the replies it writes.
    bot_tokens: BotTokens
    # The agents and their bots, kept current whether or not this replica listens for posts.
    directory: AgentDirectory
    # Reply posts written as the agents' bots (routes and the responder).
    replies: ReplyService
    # user id → ids of the teams the user belongs to (team access rules need them)
    user_teams: TtlCache[str, list[str]] = field(init=False)
    # the DM channel ids of a user, by the other user (GET /ai_bots' dmChannelID)
    direct_channels: DirectChannels = field(init=False)
    # the bridge's agent name → agent, reused for a few seconds (see bridge/agents.py)
    bridge_agents: BridgeAgents = field(init=False)

    def __post_init__(self) -> None:
        self.user_teams = TtlCache(self.settings.auth_cache_seconds)
        self.direct_channels = DirectChannels(self.mattermost, self.settings.dm_lookup_cache_seconds)
        self.bridge_agents = BridgeAgents(
            registry_lookup(self.backends.registry), self.settings.bridge_agent_cache_seconds
        )
        # A configuration change may move or delete the services agents point at.
        self.plugin_config.on_change(lambda _snapshot: self.bridge_agents.invalidate())

    async def team_ids_of(self, user_id: str) -> list[str]:
        """The ids of the user's teams, cached for ``auth_cache_seconds``."""
        cached = self.user_teams.get(user_id)
        if cached is None:
            cached = [t.id for t in await self.mattermost.get_user_teams(user_id)]
            self.user_teams.put(user_id, cached)
        return cached

    async def close(self) -> None:
        """Release everything, in dependency order, once no request or reply uses it."""
        await self.directory.close()
        await self.bot_tokens.revoke_all()  # after the drain: nothing writes as a bot any more
        await self.plugin_config.close()
        await self.backends.close()
        await self.mattermost.aclose()
        await self.http.close()


DEPS = web.AppKey("deps", GatewayDeps)
