"""Attaching a renderer to the turn writing into a reply post (``Conversations.Attach``).

The replica that runs a turn holds its state in memory (``TurnRuns``) and serves the attach
itself. A replica that does not run it reads the post's stream row, which names the runner's
gRPC address, and relays the call there; a post no replica runs (never started, or its runner
died) is NOT_FOUND, and the gateway marks the post interrupted. Nothing per token goes to the
database: a relay costs one row read, and the turn's state lives where its provider stream is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.common.errors import FailedPrecondition, InvalidInput, NotFound
from services.llm.conversations.model import Bound, TurnEvent
from services.llm.conversations.replay import for_viewer
from services.llm.conversations.runs import TurnRun, TurnRuns
from services.llm.conversations.store import ConversationStore


@dataclass(frozen=True)
class RemoteRunner:
    """The turn runs on another replica, at this gRPC address."""

    address: str


class Attachments:
    """Finds where a post's turn runs and serves the local ones."""

    def __init__(self, runs: TurnRuns, store: ConversationStore) -> None:
        self.runs = runs
        self.store = store

    async def locate(self, post_id: str) -> TurnRun | RemoteRunner:
        """The local run of ``post_id``, or the replica to relay to. NotFound when no turn ever
        wrote into it, FailedPrecondition when its turn ended or was lost with its replica."""
        if not post_id:
            raise InvalidInput("post_id is required", field="post_id")
        run = self.runs.get(post_id)
        if run is not None:
            return run
        record = await self.store.get_stream(post_id)
        if record is None:
            raise NotFound("no turn ever wrote into this post")
        # Our own address without a local run: this replica restarted and lost the turn.
        if not record.runner or record.runner == self.store.runner:
            raise FailedPrecondition("the turn of this post is no longer running")
        return RemoteRunner(record.runner)

    async def follow(self, run: TurnRun, viewer_id: str) -> AsyncIterator[TurnEvent]:
        """``Bound``, the state so far, then the live events until the turn ends or pauses.
        Tool arguments and results stay with the requester unless shared."""
        replay, queue = run.attach()
        requester = viewer_id == run.requester_id
        yield Bound(run.conversation_id)
        for event in replay:
            yield for_viewer(event, requester=requester)
        async for event in run.follow(queue):
            yield for_viewer(event, requester=requester)
