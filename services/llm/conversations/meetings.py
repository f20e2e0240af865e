"""Meeting summaries (the ``summarize_transcript`` preset): read a Calls or Zoom transcript from a
Mattermost file or post, summarise it and stream the summary into the DM post like the other AI
actions (title "Meeting Summary", regenerate allowed).

Long transcripts are summarised in parts first, as the plugin does: when the transcript needs
more than three quarters of the service's input limit (less the prompt), it is split on line
(cue) boundaries, each part is summarised with a short non-streamed call, and the streamed
summary is written from those part summaries. Trimming instead would silently drop most of a
long meeting, and the action items are often at its end. Parts are bounded so one request
cannot fan out into an unbounded number of upstream calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from services.common.errors import InvalidInput, PermissionDenied
from services.common.mattermost.client import MattermostClient
from services.common.webvtt import is_transcript_file, parse_vtt, transcript_text
from services.llm.conversations.actions import ActionTurns, SummarizeInput
from services.llm.conversations.agent_registry import AgentProfile
from services.llm.conversations.calls import attribution_for
from services.llm.conversations.model import Operation, RequestContext, StreamRecord, TurnEvent
from services.llm.conversations.prompts import SUMMARY_TITLES, TRANSCRIPT_PRESET, task_prompt, transcript_request
from services.llm.conversations.turns import AgentTurns, caller_id
from services.llm.providers.base import CompletionRequest, Message, Provider, Role
from services.llm.tokens import TokenCounter

logger = logging.getLogger(__name__)

# Transcripts larger than this are refused rather than read into memory (hours of speech are
# well under it: a one-hour VTT is about 100 KB).
MAX_TRANSCRIPT_BYTES = 5 * 1024 * 1024
# The plugin's rule: summarise in parts when the transcript needs more than this share of the
# input limit, leaving room for the system prompt and the answer.
CHUNK_SHARE = 0.75
PROMPT_MARGIN_TOKENS = 500
MAX_PARTS = 20
PART_SUMMARY_TOKENS = 1024
CHUNK_TASK = "summarize_transcript_chunk"


async def read_transcript(mm: MattermostClient, user_id: str, file_id: str, post_id: str) -> str:
    """The transcript's ``speaker: text`` lines from the file (else the post's transcript file,
    else the post's message), after checking that ``user_id`` can read where it was posted."""
    if file_id:
        info = await mm.get_file_info(file_id)
        if info.post_id:
            readable = await mm.user_can_read_channel(user_id, (await mm.get_post(info.post_id)).channel_id)
        else:
            readable = info.user_id == user_id  # not attached yet: only its uploader
        if not readable:
            raise PermissionDenied("you cannot read this transcript")
        if not is_transcript_file(info):
            raise InvalidInput("the file is not a text or WebVTT transcript", field="transcript_file_id")
        raw = await mm.get_file(file_id, max_bytes=MAX_TRANSCRIPT_BYTES)
    elif post_id:
        post = await mm.get_post(post_id)
        if not await mm.user_can_read_channel(user_id, post.channel_id):
            raise PermissionDenied("you cannot read this transcript")
        raw = post.message.encode()
        for attached in post.file_ids:
            if is_transcript_file(await mm.get_file_info(attached)):
                raw = await mm.get_file(attached, max_bytes=MAX_TRANSCRIPT_BYTES)
                break
    else:
        raise InvalidInput("transcript_file_id or transcript_post_id is required", field="transcript_file_id")
    text = transcript_text(parse_vtt(raw.decode("utf-8", errors="replace")))
    if not text.strip():
        raise InvalidInput("the transcript is empty", field="transcript_file_id")
    return text


def split_transcript(text: str, budget: int, counter: TokenCounter) -> list[str]:
    """The transcript in parts of at most ``budget`` tokens, cut between lines (a single line
    longer than the budget stays whole: cutting inside a sentence loses who said it)."""
    parts: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines():
        tokens = counter.count_text(line) + 1
        if current and size + tokens > budget:
            parts.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += tokens
    if current:
        parts.append("\n".join(current))
    return parts


class MeetingSummaries:
    """The ``summarize_transcript`` preset of ``Conversations.Summarize``."""

    def __init__(self, turns: AgentTurns, actions: ActionTurns) -> None:
        self.turns = turns
        self.actions = actions

    async def summarize(self, req: SummarizeInput) -> AsyncIterator[TurnEvent]:
        """Summarise a meeting transcript into the response post."""
        if not req.ctx.channel_id or not req.response_post_id:
            raise InvalidInput("context.channel_id and response_post_id are required", field="context")
        caller_id(req.ctx)
        await self.turns.registry.check_access(req.ctx)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        text = await read_transcript(
            self.turns.mattermost, req.ctx.user_id, req.transcript_file_id, req.transcript_post_id
        )
        parts = await self._parts(text, provider, agent.model or provider.settings.default_model)
        params: dict[str, object] = {
            "context": req.ctx.as_params(),
            "preset_prompt": TRANSCRIPT_PRESET,
            "prompt": req.prompt,
            "transcript_file_id": req.transcript_file_id,
            "transcript_post_id": req.transcript_post_id,
        }
        request = transcript_request(text, req.prompt)
        prepare = None
        if len(parts) > 1:

            async def prepare() -> str:
                summaries = [await self._summarize_part(req.ctx, agent, p) for p in parts]
                joined = "\n\n".join(f"Part {i}:\n{s}" for i, s in enumerate(summaries, start=1))
                return transcript_request(joined, req.prompt, part="Meeting Part Summaries")

        async for event in self.actions.run(
            req.ctx,
            req.response_post_id,
            Operation.MEETING_SUMMARY,
            TRANSCRIPT_PRESET,
            request,
            SUMMARY_TITLES[TRANSCRIPT_PRESET],
            params,
            no_regen=False,
            prepare=prepare,
        ):
            yield event

    async def regenerate(self, record: StreamRecord) -> AsyncIterator[TurnEvent]:
        """Summarise the same transcript again onto the same post."""
        params = record.params
        context = params.get("context")
        req = SummarizeInput(
            ctx=RequestContext.from_params(dict(context) if isinstance(context, dict) else {}),
            preset_prompt=TRANSCRIPT_PRESET,
            start_time=0,
            end_time=0,
            prompt=str(params.get("prompt", "")),
            response_post_id=record.response_post_id,
            transcript_file_id=str(params.get("transcript_file_id", "")),
            transcript_post_id=str(params.get("transcript_post_id", "")),
        )
        await self.turns.store.delete_turns_after(record.conversation_id, 0)
        async for event in self.summarize(req):
            yield event

    async def _parts(self, text: str, provider: Provider, model: str) -> list[str]:
        limit = provider.settings.input_token_limit
        if limit <= 0:
            return [text]  # no limit configured: the service takes the transcript whole
        counter = await self.turns.calls.counter(model)
        overhead = counter.count_text(task_prompt(TRANSCRIPT_PRESET)) + PROMPT_MARGIN_TOKENS
        budget = max(int(limit * CHUNK_SHARE) - overhead, 1)
        if counter.count_text(text) <= budget:
            return [text]
        parts = split_transcript(text, budget, counter)
        if len(parts) > MAX_PARTS:
            raise InvalidInput(
                f"the transcript is too long to summarise with this agent's service (more than {MAX_PARTS} "
                "parts of its input limit)",
                field="transcript_file_id",
            )
        return parts

    async def _summarize_part(self, ctx: RequestContext, agent: AgentProfile, part: str) -> str:
        call = CompletionRequest(
            messages=(
                Message.text(Role.SYSTEM, task_prompt(CHUNK_TASK)),
                Message.text(Role.USER, transcript_request(part)),
            ),
            model=agent.model,
            max_output_tokens=PART_SUMMARY_TOKENS,
            user_id=ctx.user_id,
            operation="meeting_chunk_summary",
        )
        result = await self.turns.calls.complete(agent.service_id, call, attribution_for(ctx, agent, call.operation))
        return result.text.strip()
