"""Mattermost REST v4 client, its typed models, and the event WebSocket listener."""

from __future__ import annotations

from services.common.mattermost.client import DEFAULT_MAX_FILE_BYTES, MattermostClient
from services.common.mattermost.models import (
    Bot,
    Channel,
    ChannelMember,
    FileInfo,
    Post,
    Reaction,
    Team,
    TeamMember,
    User,
    UserAccessToken,
    WebSocketEvent,
)
from services.common.mattermost.websocket import MattermostWebSocket

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "Bot",
    "Channel",
    "ChannelMember",
    "FileInfo",
    "MattermostClient",
    "MattermostWebSocket",
    "Post",
    "Reaction",
    "Team",
    "TeamMember",
    "User",
    "UserAccessToken",
    "WebSocketEvent",
]
