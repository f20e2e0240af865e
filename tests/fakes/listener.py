"""A raw TCP listener that counts accepted connections: proof that a refused URL never connected."""

from __future__ import annotations

import asyncio


class ConnectionCounter:
    """Counts accepts; ``connections_seen`` uses a probe connection as a barrier before counting."""

    def __init__(self) -> None:
        self.accepted = 0
        self._probes = 0
        self._arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._on_connect, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def _on_connect(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._arrived.set()
        writer.close()

    async def connections_seen(self) -> int:
        """Accepts other than our probes, counted after a probe proves earlier accepts were handled."""
        self._probes += 1
        self._arrived.clear()
        _, writer = await asyncio.open_connection(self.host, self.port)
        async with asyncio.timeout(5):
            while self.accepted < self._probes:
                await self._arrived.wait()
                self._arrived.clear()
        writer.close()
        return self.accepted - self._probes

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
