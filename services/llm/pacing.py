"""Pacing a stream's upstream reads to its outgoing messages.

After a stream's first message, StreamComplete sends at most one message per window
(``coalescing.py``). Reading the provider's socket for every token in between, only to put the
token in a list for the next message, cost a task wake-up and a pass through the whole decode
chain (HTTP stream, SSE, JSON, the engine's generators) per token: most of the llm's CPU per
stream. So while the next message may not go yet, the SSE reader (``http_stream``) holds off:
the tokens wait in the HTTP response's buffer, and when the window is due the reader takes all
that arrived in one read, decoded and joined in one pass.

Nothing is held past its window: the sender, once due, waits for the reader to hand up what
arrived while it was held (``caught_up``) before it takes the window's events, and the end of the
response cuts a hold short (``release``), so the last message is never held back. The pacer
travels in a context variable, like the overhead clock: the reader task sets it, the SSE reader
of whichever provider runs in that task finds it. Readers that do not look (non-SSE providers)
read as before. A hold is at most a window, and counts as waiting on the provider (for the stall
watchdog and the overhead clock): it stands in for the waits of the reads it saves.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable


class ReadPacer:
    """When the reader may next read (``due``, set by the sender), and the hold until then."""

    __slots__ = ("_hold", "_loop", "_wake_sender", "due", "holding")

    def __init__(self, wake_sender: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake_sender = wake_sender
        self._hold: asyncio.Future[None] | None = None
        self.due = float("-inf")  # no message sent yet: nothing to wait for
        # From the start of a hold until what arrived meanwhile has been handed up.
        self.holding = False

    async def hold(self) -> bool:
        """Wait until ``due`` (or ``release``); False when a message may go now."""
        # One loop turn first: a sender the last read woke takes it now and sets the next due.
        await asyncio.sleep(0)
        if self.due <= self._loop.time():
            return False
        self.holding = True
        self._hold = hold = self._loop.create_future()
        timer = self._loop.call_at(self.due, self.release)
        try:
            await hold
        except BaseException:
            self.caught_up()  # cut off (a stall, a cancel): nothing more will be handed up
            raise
        finally:
            timer.cancel()
            self._hold = None
        return True

    def release(self) -> None:
        """End the current hold now (its window is due, or the response ended)."""
        hold = self._hold
        if hold is not None and not hold.done():
            hold.set_result(None)

    def caught_up(self) -> None:
        """The reader handed up everything that arrived while it was held: the sender may take it."""
        if self.holding:
            self.holding = False
            self._wake_sender()


_current: contextvars.ContextVar[ReadPacer | None] = contextvars.ContextVar("llm_read_pacer", default=None)


def set_pacer(pacer: ReadPacer) -> None:
    """Makes ``pacer`` the reads' pacer for the rest of this task (the reader task's own context)."""
    _current.set(pacer)


def current_pacer() -> ReadPacer | None:
    """The pacer of the stream read in this task, if any."""
    return _current.get()
