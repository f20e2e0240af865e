"""The fake's WebSocket side: ``/api/v4/websocket`` and the events it pushes.

Authentication is the server's: an ``Authorization`` header on the upgrade (a bad token is a 401
before upgrading) or, without one, an ``authentication_challenge`` action answered by
``{"status": "OK", "seq_reply": n}``. Then comes ``hello`` (seq 0) and every event broadcast to a
channel the user belongs to, each with the connection's next ``seq``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.mattermost.state import FakeState, new_id

logger = logging.getLogger(__name__)

SERVER_VERSION = "9.11.0.fake"


@dataclass(eq=False)
class Connection:
    """One authenticated WebSocket and its event sequence counter."""

    ws: web.WebSocketResponse
    user_id: str
    connection_id: str = field(default_factory=new_id)
    seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send_event(self, event: str, data: dict[str, Any], broadcast: dict[str, Any]) -> None:
        """Send one event frame with this connection's next sequence number."""
        async with self.lock:
            frame = {"event": event, "data": data, "broadcast": broadcast, "seq": self.seq}
            self.seq += 1
            if self.ws.closed:
                return
            try:
                await self.ws.send_str(json.dumps(frame))
            except ConnectionResetError:
                # The peer died and its close is not processed yet: the event is lost to that
                # socket only, as the real server's is, never an error to whoever posted.
                logger.info("event %s not delivered to a closing socket of user %s", event, self.user_id)


def _broadcast(user_id: str = "", channel_id: str = "", team_id: str = "") -> dict[str, Any]:
    return {
        "omit_users": None,
        "user_id": user_id,
        "channel_id": channel_id,
        "team_id": team_id,
        "connection_id": "",
        "omit_connection_id": "",
    }


class EventHub:
    """The connected WebSockets, and delivery of events to the right ones."""

    def __init__(self, state: FakeState) -> None:
        self._state = state
        self.connections: list[Connection] = []

    async def publish_to_channel(self, channel_id: str, event: str, data: dict[str, Any]) -> None:
        """Send an event to every connection whose user is a member of the channel."""
        members = self._state.channel_member_ids(channel_id)
        broadcast = _broadcast(channel_id=channel_id)
        for connection in list(self.connections):
            if connection.user_id in members:
                await connection.send_event(event, data, broadcast)

    async def post_created(self, post: dict[str, Any]) -> None:
        """``posted``: data carries the post as a JSON string, as the real server sends it."""
        channel = self._state.channels[post["channel_id"]]
        sender = self._state.users.get(post["user_id"], {})
        data: dict[str, Any] = {
            "channel_display_name": channel["display_name"],
            "channel_name": channel["name"],
            "channel_type": channel["type"],
            "post": json.dumps(post),
            "sender_name": "@" + sender.get("username", ""),
            "set_online": True,
            "team_id": channel["team_id"],
        }
        mentions = self._mentions(post, channel)
        if mentions:
            data["mentions"] = json.dumps(sorted(mentions))
        await self.publish_to_channel(channel["id"], "posted", data)

    async def post_edited(self, post: dict[str, Any]) -> None:
        """``post_edited`` with the updated post as a JSON string."""
        await self.publish_to_channel(post["channel_id"], "post_edited", {"post": json.dumps(post)})

    def _mentions(self, post: dict[str, Any], channel: dict[str, Any]) -> set[str]:
        members = self._state.channel_member_ids(channel["id"]) - {post["user_id"]}
        if channel["type"] == "D":
            return members
        words = {w.strip(".,:;!?").lower() for w in post["message"].split() if w.startswith("@")}
        return {uid for uid in members if "@" + self._state.users[uid]["username"].lower() in words}

    async def drop_all(self) -> int:
        """Close every connection, as a restarting server would; returns how many there were."""
        dropped, self.connections = self.connections, []
        for connection in dropped:
            await connection.ws.close(code=1001, message=b"server restarting")
        return len(dropped)

    async def handle(self, request: web.Request, user_id: str | None) -> web.WebSocketResponse:
        """Serve one upgraded connection until the client or the fake closes it."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        connection: Connection | None = None
        if user_id is not None:
            connection = await self._open(ws, user_id)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                connection = await self._on_action(ws, connection, message.data)
        finally:
            if connection in self.connections:
                self.connections.remove(connection)
        return ws

    async def _open(self, ws: web.WebSocketResponse, user_id: str) -> Connection:
        connection = Connection(ws=ws, user_id=user_id)
        # Registered before hello: a client that saw hello must not miss the next post.
        self.connections.append(connection)
        hello = {"server_version": SERVER_VERSION, "connection_id": connection.connection_id}
        await connection.send_event("hello", hello, _broadcast(user_id=user_id))
        return connection

    async def _on_action(self, ws: web.WebSocketResponse, connection: Connection | None, raw: str) -> Connection | None:
        try:
            action = json.loads(raw)
            seq = int(action.get("seq", 0))
            name = str(action.get("action", ""))
        except (ValueError, TypeError, AttributeError):
            return connection
        if connection is None:
            token = (action.get("data") or {}).get("token", "")
            user_id = self._state.tokens.get(token) if name == "authentication_challenge" else None
            if user_id is None or self._state.users[user_id]["delete_at"]:
                await ws.send_json(_fail(seq, "api.web_socket_router.not_authenticated.app_error"))
                return None
            await ws.send_json({"status": "OK", "seq_reply": seq})
            return await self._open(ws, user_id)
        if name == "ping":
            await ws.send_json({"status": "OK", "seq_reply": seq, "data": {"text": "pong"}})
        elif name in {"user_typing", "get_statuses", "get_statuses_by_ids"}:
            await ws.send_json({"status": "OK", "seq_reply": seq})
        else:
            await ws.send_json(_fail(seq, "api.web_socket_router.bad_action.app_error"))
        return connection


def _fail(seq: int, error_id: str) -> dict[str, Any]:
    return {"status": "FAIL", "seq_reply": seq, "error": {"id": error_id, "message": error_id}}
