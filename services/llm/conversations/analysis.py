"""AI actions on posts: thread analysis (summary, action items, open questions) and channel
summaries over a time range, each run as an action turn (``actions.py``). The transcript preset
of Summarize goes to the meeting summaries (``meetings.py``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from services.common.errors import InvalidInput, PermissionDenied
from services.common.mattermost.models import Post
from services.llm.conversations.actions import ActionTurns, SummarizeInput
from services.llm.conversations.history import read_thread
from services.llm.conversations.meetings import MeetingSummaries
from services.llm.conversations.model import Operation, RequestContext, StreamRecord, TurnEvent
from services.llm.conversations.prompts import (
    ANALYSIS_TITLES,
    SUMMARY_TITLES,
    TRANSCRIPT_PRESET,
    FormattedPost,
    thread_text,
)
from services.llm.conversations.turns import AgentTurns, caller_id

# The webapp's custom analysis: the user's prompt is the task.
CUSTOM_PRESET = "custom"
MAX_RANGE_MS = 14 * 24 * 3600 * 1000
MAX_SUMMARY_POSTS = 200
PAGE_SIZE = 60


@dataclass(frozen=True)
class AnalyzeInput:
    """An Analyze request: a thread to analyse into a bot post."""

    ctx: RequestContext
    post_id: str
    analysis_type: str
    response_post_id: str


class Analyses:
    """Thread analyses and channel summaries, each a turn into a new bot post."""

    def __init__(self, turns: AgentTurns, actions: ActionTurns, meetings: MeetingSummaries) -> None:
        self.turns = turns
        self.actions = actions
        self.meetings = meetings

    async def analyze(self, req: AnalyzeInput) -> AsyncIterator[TurnEvent]:
        """Analyse a thread into the given response post."""
        if req.analysis_type not in ANALYSIS_TITLES:
            raise InvalidInput(f"unknown analysis_type {req.analysis_type!r}", field="analysis_type")
        if not req.post_id or not req.response_post_id:
            raise InvalidInput("post_id and response_post_id are required", field="post_id")
        caller_id(req.ctx)
        await self.turns.registry.check_access(req.ctx)
        post = await self.turns.mattermost.get_post(req.post_id)
        posts = await read_thread(self.turns.mattermost, req.ctx.user_id, post.channel_id, post.thread_root_id)
        params: dict[str, object] = {
            "context": req.ctx.as_params(),
            "post_id": req.post_id,
            "analysis_type": req.analysis_type,
        }
        async for event in self.actions.run(
            req.ctx,
            req.response_post_id,
            Operation.THREAD_ANALYSIS,
            req.analysis_type,
            thread_text(await self._format(posts)),
            ANALYSIS_TITLES[req.analysis_type],
            params,
            no_regen=False,
        ):
            yield event

    async def summarize(self, req: SummarizeInput) -> AsyncIterator[TurnEvent]:
        """Summarise a channel's posts between two times (at most 14 days, 200 posts)."""
        if req.preset_prompt not in SUMMARY_TITLES:
            raise InvalidInput(f"unsupported preset_prompt {req.preset_prompt!r}", field="preset_prompt")
        if req.preset_prompt == TRANSCRIPT_PRESET:
            async for event in self.meetings.summarize(req):
                yield event
            return
        if req.preset_prompt == CUSTOM_PRESET and not req.prompt.strip():
            raise InvalidInput("prompt is required for a custom analysis", field="prompt")
        end = req.end_time or int(time.time() * 1000)
        if req.start_time <= 0 or req.start_time > end:
            raise InvalidInput("start_time must be before end_time", field="start_time")
        if end - req.start_time > MAX_RANGE_MS:
            raise InvalidInput("the time range may span at most 14 days", field="start_time")
        if not req.ctx.channel_id or not req.response_post_id:
            raise InvalidInput("context.channel_id and response_post_id are required", field="context")
        caller_id(req.ctx)
        await self.turns.registry.check_access(req.ctx)
        if not await self.turns.mattermost.user_can_read_channel(req.ctx.user_id, req.ctx.channel_id):
            raise PermissionDenied("you cannot read this channel")
        # With no end_time the range runs to the newest post: Mattermost's clock, not ours, stamps
        # posts, so capping at our "now" would drop the latest ones whenever the two clocks differ.
        posts = await self._channel_posts(req.ctx.channel_id, req.start_time, req.end_time or None)
        task = "summarize_range" if req.preset_prompt == "summarize_range" else req.preset_prompt
        ctx, tools = req.ctx, {}
        if req.channel_tools:
            # The plugin's tool-driven analysis: besides the range's posts, the model may read the
            # channel (further back, its details) with readers bound to it, run without asking.
            ctx = replace(req.ctx, bound_channel_id=req.ctx.channel_id)
            tools = {t.name: t for t in await self.turns.tools.list_tools(ctx, "", automated=False)}
        params: dict[str, object] = {"context": ctx.as_params(), "preset_prompt": req.preset_prompt}
        async for event in self.actions.run(
            ctx,
            req.response_post_id,
            Operation.CHANNEL_INTERVAL,
            task,
            thread_text(await self._format(posts), req.prompt),
            SUMMARY_TITLES[req.preset_prompt],
            params,
            no_regen=True,
            tools=tools,
        ):
            yield event

    async def regenerate(self, record: StreamRecord) -> AsyncIterator[TurnEvent]:
        """Re-run a thread analysis or a meeting summary onto its post (channel summaries are
        no_regen)."""
        if record.kind == Operation.MEETING_SUMMARY:
            async for event in self.meetings.regenerate(record):
                yield event
            return
        ctx = RequestContext.from_params(dict(record.params.get("context") or {}))
        req = AnalyzeInput(
            ctx,
            str(record.params.get("post_id", "")),
            str(record.params.get("analysis_type", "")),
            record.response_post_id,
        )
        await self.turns.store.delete_turns_after(record.conversation_id, 0)
        async for event in self.analyze(req):
            yield event

    async def _channel_posts(self, channel_id: str, start: int, end: int | None) -> list[Post]:
        # Pages of 60, newest first on the server, until the range or the 200-post cap is covered.
        found: dict[str, Post] = {}
        for page in range(MAX_SUMMARY_POSTS // PAGE_SIZE + 1):
            batch = await self.turns.mattermost.get_channel_posts(channel_id, page=page, per_page=PAGE_SIZE)
            for post in batch:
                in_range = start <= post.create_at and (end is None or post.create_at <= end)
                if in_range and not post.delete_at and not post.type:
                    found[post.id] = post
            if len(batch) < PAGE_SIZE or (batch and min(p.create_at for p in batch) < start):
                break
        ordered = sorted(found.values(), key=lambda p: (p.create_at, p.id))
        return ordered[-MAX_SUMMARY_POSTS:]

    async def _format(self, posts: Sequence[Post]) -> list[FormattedPost]:
        users = await self.turns.mattermost.get_users_by_ids(sorted({p.user_id for p in posts}))
        names = {u.id: u.username for u in users}
        return [FormattedPost(names.get(p.user_id, "unknown"), p.message) for p in posts if p.message.strip()]
