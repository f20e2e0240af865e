"""Waiting for something in a test: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def poll(
    check: Callable[[], Any | Awaitable[Any]],
    *,
    within: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met in time",
) -> Any:
    """Call ``check()`` (plain or async) until it returns something truthy, and return that.

    Raises AssertionError with ``message`` once ``within`` seconds have passed; a callable
    ``message`` is called then, to say what was seen last.
    """
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        await asyncio.sleep(interval)
