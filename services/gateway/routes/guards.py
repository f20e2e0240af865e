"""The plugin's route guards (plugin-api.md 1.1) that post, channel and conversation routes share."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common import licensing
from services.common.errors import InvalidInput, NotFound, PermissionDenied
from services.common.grpc_client import unary
from services.common.mattermost import Post
from services.common.plugin_config import PluginConfigSnapshot
from services.gateway.conversations.runner import TRIGGERS, ConversationTriggers
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of
from services.gateway.rendering.reply import PROP_REQUESTER

# How long a route waits for the first plugin configuration after the gateway started.
_CONFIG_WAIT_SECONDS = 5.0


def triggers_of(request: web.Request) -> ConversationTriggers:
    """This replica's conversation side, for routes that start or await answers."""
    return request.config_dict[TRIGGERS]


def require_admin(request: web.Request) -> None:
    """``mattermostAdminAuthorizationRequired`` (the ``/admin/*`` routes): ``manage_system``, else 403.
    The services check again; refusing here spares them calls that cannot succeed."""
    if not caller_of(request).identity.is_system_admin:
        raise PermissionDenied("only system admins may use the admin routes")


async def bot_for(request: web.Request) -> registry_pb2.Agent:
    """``aiBotRequired``: the agent named by ``botUsername``, else the default one the caller may use."""
    deps = request.app[DEPS]
    username = request.query.get("botUsername", "")
    if username:
        return (await unary(deps.backends.registry.GetAgent, registry_pb2.GetAgentRequest(username=username))).agent
    caller = caller_of(request)
    usable = await unary(
        deps.backends.registry.ListUsableAgents,
        registry_pb2.ListUsableAgentsRequest(user_team_ids=await deps.team_ids_of(caller.user.id)),
    )
    if not usable.agents:
        raise NotFound("no agent is configured")
    return usable.agents[0]


async def readable_post(request: web.Request) -> Post:
    """``postAuthorizationRequired``: the post, which the caller may read (403 otherwise)."""
    deps = request.app[DEPS]
    post = await deps.mattermost.get_post(request.match_info["postid"])
    await require_channel_read(request, post.channel_id)
    return post


async def require_channel_read(request: web.Request, channel_id: str) -> None:
    """``channelAuthorizationRequired``: Mattermost's ``read_channel`` for the caller."""
    deps = request.app[DEPS]
    if not await deps.mattermost.user_can_read_channel(caller_of(request).user.id, channel_id):
        raise PermissionDenied("you cannot read this channel")


def require_agent_post(request: web.Request, post: Post) -> None:
    """Stop, regenerate and tool decisions apply only to posts an agent's bot wrote."""
    if request.app[DEPS].directory.by_bot(post.user_id) is None:
        raise InvalidInput("the post was not written by an agent")


def require_requester(request: web.Request, post: Post) -> None:
    """Conversation ownership: only the user the post answers may act on it (403). The llm service
    checks the conversation's owner again; this spares it calls that cannot succeed."""
    requester = str(post.props.get(PROP_REQUESTER, ""))
    if requester and requester != caller_of(request).user.id:
        raise PermissionDenied("only the user who asked can do this")


async def plugin_config(request: web.Request) -> PluginConfigSnapshot:
    """The newest plugin configuration and license (503 until the registry sent one)."""
    return await request.app[DEPS].plugin_config.wait_ready(_CONFIG_WAIT_SECONDS)


async def require_license(request: web.Request, feature: licensing.Feature) -> None:
    """The plugin's license guards (``channelAnalysisLicenseRequired`` and friends): 403 naming
    the feature when the cluster's license does not cover it."""
    licensing.require((await plugin_config(request)).license, feature)


async def require_tool_calls_allowed(request: web.Request, post: Post) -> None:
    """Tool decisions outside a DM need ``enableChannelMentionToolCalling`` (403 otherwise)."""
    channel = await request.app[DEPS].mattermost.get_channel(post.channel_id)
    if channel.type == "D":
        return
    if not (await plugin_config(request)).config.enable_channel_mention_tool_calling:
        raise PermissionDenied("tool calling in channels is disabled (enableChannelMentionToolCalling)")
