"""Listener for Mattermost's event WebSocket (``/api/v4/websocket``).

The token goes in the upgrade request's ``Authorization`` header, which Mattermost accepts in
place of the ``authentication_challenge`` action; the server then sends ``hello``. Pings are
answered by aiohttp (autoping) and our own heartbeat notices half-open connections. When the
connection drops, the listener reconnects with capped exponential backoff and jitter and yields
the new ``hello``: events sent while it was away are lost, so a consumer that must see every post
treats ``hello`` as "catch up through REST" (e.g. ``get_channel_posts(since=...)``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator

import aiohttp

from services.common.errors import PermissionDenied, Unauthenticated
from services.common.http import new_client_session
from services.common.mattermost.models import WebSocketEvent

logger = logging.getLogger(__name__)

WEBSOCKET_PATH = "/api/v4/websocket"


def websocket_url(base_url: str) -> str:
    """The WebSocket URL for a server's HTTP base URL (``http`` → ``ws``, ``https`` → ``wss``)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + WEBSOCKET_PATH


class MattermostWebSocket:
    """Yields a server's events until ``aclose()``; survives restarts of the server."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float = 30.0,
        connect_timeout: float = 10.0,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self._url = websocket_url(base_url)
        self._token = token
        self._session = session
        self._owns_session = session is None
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._closed = asyncio.Event()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.connections = 0

    def __repr__(self) -> str:
        return f"MattermostWebSocket(url={self._url!r})"

    @property
    def connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._ws is not None and not self._ws.closed

    async def aclose(self) -> None:
        """Stop: the ``events()`` iterator ends after closing the open connection, if any."""
        self._closed.set()
        if self._ws is not None:
            await self._ws.close()
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    async def __aenter__(self) -> MattermostWebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def events(self) -> AsyncIterator[WebSocketEvent]:
        """Every event from the server, across reconnects, until ``aclose()``.

        Raises Unauthenticated (or PermissionDenied) when the server refuses the token: retrying
        a token it rejected would only hammer it.
        """
        failures = 0
        while not self._closed.is_set():
            ws = await self._connect()
            if ws is not None:
                self._ws = ws
                self.connections += 1
                try:
                    async for event in self._read(ws):
                        if event.event == "hello":
                            failures = 0
                        yield event
                finally:
                    self._ws = None
                    await ws.close()
            if self._closed.is_set():
                return
            delay = self._backoff(failures)
            failures += 1
            logger.warning("Mattermost WebSocket disconnected; reconnecting", extra={"delay_s": round(delay, 3)})
            if await _sleep_or_closed(self._closed, delay):
                return

    def _backoff(self, failures: int) -> float:
        # Full-range jitter keeps a fleet of gateways from reconnecting in lockstep after a restart.
        ceiling = min(self._max_backoff, self._initial_backoff * (2.0 ** min(failures, 30)))
        return ceiling * random.uniform(0.5, 1.0)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        if self._session is None or self._session.closed:
            # Created on first use, in the running loop; no total timeout on a long-lived stream.
            self._session = new_client_session(connect_timeout=self._connect_timeout)
            self._owns_session = True
        try:
            return await self._session.ws_connect(
                self._url,
                headers={"Authorization": f"Bearer {self._token}"},
                heartbeat=self._heartbeat,
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=self._connect_timeout),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                raise Unauthenticated("Mattermost rejected the WebSocket token") from exc
            if exc.status == 403:
                raise PermissionDenied("Mattermost refused the WebSocket connection") from exc
            logger.warning("Mattermost WebSocket handshake failed", extra={"status": exc.status})
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("Mattermost WebSocket connect failed", extra={"error": type(exc).__name__})
        return None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[WebSocketEvent]:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                # CLOSE/ERROR end the iteration inside aiohttp; binary frames are only sent on request.
                continue
            try:
                frame = json.loads(message.data)
            except ValueError:
                logger.warning("ignoring a non-JSON Mattermost WebSocket frame")
                continue
            # Frames with ``seq_reply`` answer actions we sent; only ``event`` frames are events.
            if isinstance(frame, dict) and isinstance(frame.get("event"), str):
                yield WebSocketEvent.from_json(frame)


async def _sleep_or_closed(closed: asyncio.Event, delay: float) -> bool:
    """Wait ``delay`` seconds unless ``closed`` is set first; True when it was closed."""
    try:
        await asyncio.wait_for(closed.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True
