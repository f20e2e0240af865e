"""A gate a fake holds requests at until the test opens it: proof that two requests were in
flight at once, without timing anything."""

from __future__ import annotations

import asyncio


class Gate:
    """Holds every request that reaches it until ``release``; ``arrived`` counts them."""

    def __init__(self) -> None:
        self.arrived = 0
        self._open = asyncio.Event()

    async def passing(self) -> None:
        """Wait here until the gate is open."""
        self.arrived += 1
        await self._open.wait()

    def release(self) -> None:
        """Let the held requests, and every later one, through."""
        self._open.set()
