"""Turns that run on this replica independently of the RPC that started them.

A streaming call (Respond, Regenerate, ToolDecision, ...) does its checks and preparation in the
RPC, so that refusals still fail the call before its first event. Everything after the
preparation (the ``Bound`` event) runs in a task this registry owns: a caller that disconnects
(a gateway replica died) only drops its subscription, and the turn goes on, bounded by the turn
timeout, until it ends, is stopped, or the service shuts down (the loop saves the partial text
of the round in progress on the way out). Renderers that come later ``attach``: they get the
turn's state so far, then its live events. Ended turns stay attachable for a while, so a
renderer that took a claim over just after the end still finishes the post.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.common.errors import DomainError, ErrorClass, UpstreamUnavailable
from services.common.identity import current_deadline
from services.llm.conversations.model import Bound, Finish, Finished, TurnEvent
from services.llm.conversations.replay import TurnSnapshot
from services.llm.providers.base import StreamError

logger = logging.getLogger(__name__)

# Seconds an ended turn stays attachable on the replica that ran it.
RETAIN_SECONDS = 120.0
TIMEOUT_MESSAGE = "The answer took too long and was cut off. Ask again to continue."
SHUTDOWN_MESSAGE = "The answer was interrupted because the service restarted. Ask again to continue."
FAILED_MESSAGE = "The answer failed. Try again."


@dataclass(eq=False)
class TurnRun:
    """One turn running (or recently ended) on this replica."""

    post_id: str
    conversation_id: str
    requester_id: str
    snapshot: TurnSnapshot = field(default_factory=TurnSnapshot)
    task: asyncio.Task[None] | None = None
    _subscribers: set[asyncio.Queue[TurnEvent]] = field(default_factory=set)

    @property
    def ended(self) -> bool:
        """Whether the turn has finished."""
        return self.snapshot.finished is not None

    def publish(self, event: TurnEvent) -> None:
        """Applies an event to the snapshot and hands it to every follower."""
        self.snapshot.apply(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[TurnEvent]:
        """A queue that gets every event published from now on."""
        queue: asyncio.Queue[TurnEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    async def follow(self, queue: asyncio.Queue[TurnEvent] | None) -> AsyncIterator[TurnEvent]:
        """Live events from ``queue`` until the turn ends; unsubscribes however it stops."""
        if queue is None:
            return
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            self._subscribers.discard(queue)

    def attach(self) -> tuple[list[TurnEvent], asyncio.Queue[TurnEvent] | None]:
        """The state so far and, unless the turn ended, a queue of what follows. Taken together
        without an await, so no event falls between the two."""
        replay = self.snapshot.replay()
        return replay, None if self.ended else self.subscribe()


class TurnRuns:
    """The turns of this replica, by the bot post they write."""

    def __init__(self, timeout_seconds: float, *, retain_seconds: float = RETAIN_SECONDS) -> None:
        self.timeout_seconds = timeout_seconds
        self.retain_seconds = retain_seconds
        self._runs: dict[str, TurnRun] = {}
        self._closing = False

    def get(self, post_id: str) -> TurnRun | None:
        """The turn writing into ``post_id`` on this replica, if any."""
        return self._runs.get(post_id)

    async def detach(
        self, events: AsyncIterator[TurnEvent], post_id: str, requester_id: str
    ) -> AsyncIterator[TurnEvent]:
        """Run ``events`` up to its ``Bound`` event here (errors fail the caller), the rest in a
        task of this registry; yields ``Bound`` and then the turn's events for as long as the
        caller listens."""
        try:
            first = await anext(events)
        except StopAsyncIteration:
            return
        if self._closing or not isinstance(first, Bound):
            await events.aclose()  # type: ignore[attr-defined]
            if self._closing:
                raise UpstreamUnavailable("the llm service is shutting down; try again")
            raise TypeError("a turn must announce its conversation (Bound) first")
        run = TurnRun(post_id, first.conversation_id, requester_id)
        queue = run.subscribe()
        run.task = asyncio.create_task(self._drive(run, events), name=f"turn {post_id}")
        self._runs[post_id] = run
        yield first
        async for event in run.follow(queue):
            yield event

    async def _drive(self, run: TurnRun, events: AsyncIterator[TurnEvent]) -> None:
        # The turn outlives the call that started it: it must not inherit that call's deadline.
        current_deadline.set(None)
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async for event in events:
                    run.publish(event)
        except TimeoutError:
            logger.warning("turn timed out", extra={"post_id": run.post_id})
            run.publish(StreamError(ErrorClass.PROVIDER, TIMEOUT_MESSAGE))
        except asyncio.CancelledError:
            run.publish(StreamError(ErrorClass.INTERNAL, SHUTDOWN_MESSAGE))
            raise
        except DomainError as err:
            logger.info("turn failed: %s", err.message, extra={"post_id": run.post_id})
            run.publish(StreamError(err.error_class, err.message))
        except Exception:
            logger.exception("turn failed", extra={"post_id": run.post_id})
            run.publish(StreamError(ErrorClass.INTERNAL, FAILED_MESSAGE))
        finally:
            if not run.ended:
                run.publish(Finished(Finish.ERROR))
            asyncio.get_running_loop().call_later(self.retain_seconds, self._forget, run)

    def _forget(self, run: TurnRun) -> None:
        if self._runs.get(run.post_id) is run:
            del self._runs[run.post_id]

    async def close(self) -> None:
        """Graceful shutdown: cancel the running turns and wait while they save their partial text."""
        self._closing = True
        tasks = [r.task for r in self._runs.values() if r.task is not None and not r.task.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._runs.clear()
