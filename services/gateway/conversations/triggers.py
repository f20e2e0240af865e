"""Which ``posted`` events an agent answers (plugin-api.md 4.1), decided from the event alone.

Ignored: posts by any agent bot; shared-channel posts from a remote cluster; ``wrangler`` moves;
``from_webhook``; ``from_plugin`` / ``from_bot`` posts without ``activate_ai``. Then an @mention of
an agent starts the mention flow; otherwise a post in a DM with an agent's bot starts the DM flow;
otherwise a thread reply in a channel may deserve the mention reminder (the caller checks
whether the previous post of the thread was an agent's).

``loop_in`` decides the other way into the mention flow: a user asking an agent to answer their
thread reply after the fact (POST /post/{id}/loop_in_agent).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidInput, PermissionDenied
from services.common.mattermost import Channel, Post
from services.common.mattermost.models import truthy
from services.gateway.agent_directory import AgentBot


@dataclass(frozen=True)
class Trigger:
    """A post an agent should answer."""

    post: Post
    agent: AgentBot
    channel_type: str
    team_id: str
    # True for the DM flow, False for a mention in a channel (or group message).
    is_direct_message: bool
    # True when a bot or plugin asked for the answer (``activate_ai``): fewer tools run.
    automated_invoker: bool


@dataclass(frozen=True)
class ReminderCandidate:
    """A thread reply without a mention: remind the user if the thread's last post was an agent's."""

    post: Post
    team_id: str


def mentioned_agent(message: str, agents: list[AgentBot]) -> AgentBot | None:
    """The first agent @mentioned in the message (usernames match case-insensitively, whole)."""
    best: tuple[int, AgentBot] | None = None
    for agent in agents:
        match = re.search(rf"(?<![\w.-])@{re.escape(agent.username)}(?![\w-]|\.\w)", message, re.IGNORECASE)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), agent)
    return best[1] if best else None


def dm_agent(channel_name: str, sender_id: str, agents: list[AgentBot]) -> AgentBot | None:
    """The agent whose bot is the other member of a DM (DM names are ``<id>__<id>``)."""
    members = set(channel_name.split("__"))
    if sender_id not in members:
        return None
    others = members - {sender_id}
    for agent in agents:
        if agent.bot_user_id in others:
            return agent
    return None


def classify(event_data: dict[str, Any], post: Post, agents: list[AgentBot]) -> Trigger | ReminderCandidate | None:
    """What to do with one ``posted`` event's post."""
    bot_ids = {a.bot_user_id for a in agents}
    post_data = event_data.get("post")
    raw: dict[str, Any] = post_data if isinstance(post_data, dict) else {}
    props = post.props
    activated = truthy(props.get("activate_ai"))
    if post.user_id in bot_ids or post.type.startswith("system_"):
        return None
    if raw.get("remote_id") or truthy(props.get("wrangler")) or props.get("wrangler_moved_from"):
        return None
    if truthy(props.get("from_webhook")):
        return None
    if (truthy(props.get("from_plugin")) or truthy(props.get("from_bot"))) and not activated:
        return None
    channel_type = str(event_data.get("channel_type", ""))
    team_id = str(event_data.get("team_id", ""))
    agent = mentioned_agent(post.message, agents)
    if agent is not None:
        return Trigger(post, agent, channel_type, team_id, is_direct_message=False, automated_invoker=activated)
    if channel_type == "D":
        agent = dm_agent(str(event_data.get("channel_name", "")), post.user_id, agents)
        if agent is not None:
            return Trigger(post, agent, channel_type, team_id, is_direct_message=True, automated_invoker=activated)
        return None
    if post.root_id and channel_type in ("O", "P", "G"):
        return ReminderCandidate(post, team_id)
    return None


def loop_in(post: Post, caller_id: str, agent: AgentBot | None, channel: Channel, thread: Sequence[Post]) -> Trigger:
    """The mention flow for ``post`` answered by ``agent`` (None: not an agent with a bot), as
    if the post had mentioned it; the rule it breaks otherwise (PermissionDenied, InvalidInput)."""
    if post.user_id != caller_id:
        raise PermissionDenied("only the author of the post can loop in an agent")
    if agent is None:
        raise PermissionDenied("this agent cannot be looped in")
    if not post.root_id:
        raise InvalidInput("only a reply in a thread can loop in an agent")
    if channel.type not in ("O", "P"):
        raise InvalidInput("agents can be looped in only in public or private channels")
    if mentioned_agent(post.message, [agent]) is not None:
        raise InvalidInput("the post already mentions the agent")
    if not any(p.user_id == agent.bot_user_id for p in thread):
        raise InvalidInput("the agent has not taken part in this thread")
    return Trigger(post, agent, channel.type, channel.team_id, is_direct_message=False, automated_invoker=False)
