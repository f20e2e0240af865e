"""The turn every AI action runs (thread analysis, channel and meeting summaries): a conversation
of its own whose system prompt carries the action's task, the posts or transcript as the one user
turn, a fixed title and no tools but a channel analysis's bound channel readers, streamed into a
new DM post with the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from services.llm.conversations.approvals import AvailableTool
from services.llm.conversations.blocks import text_block
from services.llm.conversations.loop import TurnSetup
from services.llm.conversations.model import Bound, Operation, RequestContext, TurnEvent, TurnRole
from services.llm.conversations.prompts import system_prompt, task_prompt
from services.llm.conversations.turns import AgentTurns, agent_prompt_context
from services.llm.providers.base import Message, Role


@dataclass(frozen=True)
class SummarizeInput:
    """A Summarize call: a channel summary (``Analyses``) or a meeting summary (``MeetingSummaries``)."""

    ctx: RequestContext
    preset_prompt: str
    start_time: int
    end_time: int
    prompt: str
    response_post_id: str
    # For the summarize_transcript preset: the transcript's file, or the post carrying it.
    transcript_file_id: str = ""
    transcript_post_id: str = ""
    # POST /channel/{id}/analyze: the model may read the channel with its bound readers.
    channel_tools: bool = False


class ActionTurns:
    """Runs AI actions' turns."""

    def __init__(self, turns: AgentTurns) -> None:
        self.turns = turns

    async def run(
        self,
        ctx: RequestContext,
        response_post_id: str,
        operation: Operation,
        task: str,
        request: str,
        title: str,
        params: dict[str, object],
        *,
        no_regen: bool,
        prepare: Callable[[], Awaitable[str]] | None = None,
        tools: dict[str, AvailableTool] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Store the action's conversation (system prompt, ``request`` as the user turn) and stream
        the answer. ``prepare``, when given, produces the user message actually sent (slow work,
        run after the turn's first event). ``tools``: what the model may call (none by default)."""
        agent, provider = await self.turns.agent_and_provider(ctx.agent_id)
        user = await self.turns.mattermost.get_user(ctx.user_id)
        prompt = system_prompt(
            agent_prompt_context(
                agent, provider, user_username=user.username, user_timezone=ctx.user_timezone, is_direct_message=True
            )
        )
        prompt += "\n\n" + task_prompt(task)
        conversation, _ = await self.turns.store.get_or_create_conversation(
            user_id=ctx.user_id,
            bot_id=agent.bot_user_id,
            channel_id=None,
            root_post_id=response_post_id,
            operation=str(operation),
            system_prompt=prompt,
        )
        await self.turns.store.set_title(conversation.id, title)
        await self.turns.store.append_turn(conversation.id, TurnRole.USER, [text_block(request)])
        await self.turns.store.start_stream(
            response_post_id=response_post_id,
            conversation_id=conversation.id,
            user_id=ctx.user_id,
            request_post_id="",
            kind=operation,
            params=params,
            no_regen=no_regen,
        )
        setup = TurnSetup(
            conversation=conversation,
            ctx=ctx,
            agent=agent,
            provider=provider,
            response_post_id=response_post_id,
            operation=str(operation),
            tools=tools or {},
        )
        system = Message.text(Role.SYSTEM, conversation.system_prompt)
        messages = [system, Message.text(Role.USER, request)]
        prepared = None
        if prepare is not None:
            produce = prepare

            async def prepared() -> list[Message]:
                return [system, Message.text(Role.USER, await produce())]

        yield Bound(conversation.id)
        async for event in self.turns.run(setup, messages, title=title, kind=str(operation), prepare=prepared):
            yield event
