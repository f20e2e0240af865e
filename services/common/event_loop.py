"""The event loop every service process runs on.

uvloop by default: the services are asyncio I/O all the way (gRPC, aiohttp, streaming relays),
and uvloop's libuv-based loop makes their sockets, timers and callbacks markedly cheaper (the
llm streaming benchmark in the README measures it). ``AGENTS_EVENT_LOOP=asyncio`` runs the
standard loop instead, to compare or to rule the loop out when chasing a bug.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")
EventLoopKind = Literal["uvloop", "asyncio"]

logger = logging.getLogger(__name__)


def loop_factory(kind: EventLoopKind) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``asyncio.Runner``; None means asyncio's default loop."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a slim image without the wheel still runs, just slower
        logger.warning("uvloop is not installed; running on asyncio's default event loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: EventLoopKind = "uvloop") -> T:
    """``asyncio.run`` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
