"""Answering users' posts (``PostAnswers``): Respond, Regenerate, ToolDecision, ToolResultShare
and Stop. Each prepares its turn (checks, the conversation, the stream row, the prompt) and runs
it through ``AgentTurns.run``."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidInput, NotFound
from services.llm.conversations.agent_registry import AgentProfile
from services.llm.conversations.agent_tools import ToolOutcome, ToolRun
from services.llm.conversations.analysis import Analyses
from services.llm.conversations.approvals import REJECTED_RESULT, Decision, apply_decision
from services.llm.conversations.blocks import now_ms, text_block, tool_call_from_block
from services.llm.conversations.history import build_history, read_attachments, read_thread
from services.llm.conversations.loop import TurnSetup
from services.llm.conversations.model import (
    ApprovalRequired,
    Block,
    Bound,
    Conversation,
    Finish,
    Finished,
    Operation,
    RequestContext,
    StreamRecord,
    ToolStatus,
    ToolUpdate,
    TurnEvent,
    TurnRole,
)
from services.llm.conversations.prompts import system_prompt
from services.llm.conversations.questions import answer_blocks, answer_result
from services.llm.conversations.turns import AgentTurns, agent_prompt_context, caller_id
from services.llm.providers.base import Message, Provider, Role

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RespondInput:
    """A Respond request: the user's post to answer into a bot post."""

    ctx: RequestContext
    post_id: str
    root_post_id: str
    message: str
    file_ids: tuple[str, ...]
    response_post_id: str
    automated_invoker: bool = False

    def as_params(self) -> dict[str, object]:
        """The request as stored with its stream, so Regenerate can run it again."""
        return {
            "context": self.ctx.as_params(),
            "post_id": self.post_id,
            "root_post_id": self.root_post_id,
            "message": self.message,
            "file_ids": list(self.file_ids),
            "automated_invoker": self.automated_invoker,
        }

    @classmethod
    def from_params(cls, params: dict[str, object], response_post_id: str) -> RespondInput:
        """The request back from ``as_params``, answering into ``response_post_id``."""
        ctx = params.get("context")
        files = params.get("file_ids")
        return cls(
            ctx=RequestContext.from_params(ctx if isinstance(ctx, dict) else {}),
            post_id=str(params.get("post_id", "")),
            root_post_id=str(params.get("root_post_id", "")),
            message=str(params.get("message", "")),
            file_ids=tuple(str(f) for f in files) if isinstance(files, list) else (),
            response_post_id=response_post_id,
            automated_invoker=bool(params.get("automated_invoker", False)),
        )


class PostAnswers:
    """The agent's answers to users' posts, and what the requester can do with them."""

    def __init__(self, turns: AgentTurns, analyses: Analyses) -> None:
        self.turns = turns
        # Regenerate serves every kind of bot post: an AI action's goes back to its analysis.
        self.analyses = analyses

    async def respond(self, req: RespondInput) -> AsyncIterator[TurnEvent]:
        """Answer a user's post. Fails before the first event on access, lookup or claim errors."""
        for name in ("post_id", "response_post_id"):
            if not getattr(req, name):
                raise InvalidInput(f"{name} is required", field=name)
        if not req.ctx.agent_id or not req.ctx.user_id:
            raise InvalidInput("context.user_id and context.agent_id are required", field="context")
        caller_id(req.ctx)
        # Checked here although the gateway checks before it creates the reply post (to leave no
        # post behind): Respond is a public API, and no turn may run for a user the agent refuses.
        await self.turns.registry.check_access(req.ctx)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        tools_allowed, web_search = await self.capabilities(req.ctx, agent, req.automated_invoker)
        prompt = await self._system_prompt(
            req.ctx, agent, provider, tools_note=not tools_allowed and not agent.disable_tools
        )
        conversation, created = await self.turns.store.get_or_create_conversation(
            user_id=req.ctx.user_id,
            bot_id=agent.bot_user_id,
            channel_id=None if req.ctx.is_direct_message else (req.ctx.channel_id or None),
            root_post_id=req.root_post_id or req.post_id,
            operation=str(Operation.CONVERSATION),
            system_prompt=prompt,
        )
        if not await self._start_stream(conversation, req, first=True):
            raise AlreadyExists("this post is already being answered")
        try:
            content = [text_block(req.message)] if req.message else []
            content += [{"type": "file", "file_id": f} for f in req.file_ids]
            await self.turns.store.append_turn(conversation.id, TurnRole.USER, content, post_id=req.post_id)
            setup, messages = await self._prepare(req, conversation, agent, provider, tools_allowed, web_search)
        except BaseException:
            await self.turns.store.discard_stream(req.response_post_id)
            raise
        yield Bound(conversation.id)
        title_job = None
        if created and req.ctx.is_direct_message:
            title_job = functools.partial(self.turns.generate_title, req.ctx, agent, conversation.id, req.message)
        async for event in self.turns.run(setup, messages, title_job=title_job):
            yield event

    async def regenerate(self, post_id: str, ctx: RequestContext) -> AsyncIterator[TurnEvent]:
        """Re-run the turn that produced a bot post, onto the same post."""
        record = await self.turns.owned_stream(post_id)
        if record.no_regen:
            raise FailedPrecondition("this post cannot be regenerated")
        if record.kind != Operation.CONVERSATION:
            async for event in self.analyses.regenerate(record):
                yield event
            return
        req = RespondInput.from_params(record.params, post_id)
        if ctx.user_timezone:
            req = RespondInput(
                **{**req.__dict__, "ctx": RequestContext(**{**req.ctx.__dict__, "user_timezone": ctx.user_timezone})}
            )
        await self.turns.registry.check_access(req.ctx)
        conversation = await self._conversation(record)
        turns = await self.turns.store.turns(conversation.id)
        anchor = next((t for t in turns if t.role == TurnRole.USER and t.post_id == req.post_id), None)
        if anchor is not None:
            await self.turns.store.delete_turns_after(conversation.id, anchor.sequence)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        tools_allowed, web_search = await self.capabilities(req.ctx, agent, req.automated_invoker)
        await self._start_stream(conversation, req)
        setup, messages = await self._prepare(req, conversation, agent, provider, tools_allowed, web_search)
        yield Bound(conversation.id)
        async for event in self.turns.run(setup, messages):
            yield event

    async def tool_decision(self, post_id: str, accepted_ids: Sequence[str]) -> AsyncIterator[TurnEvent]:
        """Run the accepted pending calls, reject the others, and resume the turn."""
        record = await self.turns.owned_stream(post_id)
        req = RespondInput.from_params(record.params, post_id)
        await self.turns.registry.check_access(req.ctx)
        turn, decision = await self.turns.store.update_anchor(post_id, lambda t: _decide(t.content, accepted_ids))
        conversation = await self._conversation(record)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        _, web_search = await self.capabilities(req.ctx, agent, req.automated_invoker)
        await self._start_stream(conversation, req)
        setup, _ = await self._prepare(req, conversation, agent, provider, True, web_search, with_history=False)
        accepted = [tool_call_from_block(b) for b in decision.accepted]
        runnable = [c for c in accepted if c.name in setup.tools]
        yield Bound(conversation.id)
        runs = await self.turns.tools.run(req.ctx, conversation.id, runnable)
        runs += [
            ToolRun(c, ToolOutcome(f"tool {c.name} is no longer available", True))
            for c in accepted
            if c not in runnable
        ]
        runs += [ToolRun(tool_call_from_block(b), ToolOutcome(REJECTED_RESULT, True)) for b in decision.rejected]
        final = {r.call.id: r.status for r in runs if r.outcome.content != REJECTED_RESULT}
        await self.turns.store.update_turn(
            turn.id,
            [
                {**b, "status": str(final[b["id"]])} if b.get("type") == "tool_use" and b.get("id") in final else b
                for b in turn.content
            ],
        )
        await self.turns.loop.persist_results(setup, runs, shared=req.ctx.is_direct_message)
        for run in runs:
            status = ToolStatus.REJECTED if run.outcome.content == REJECTED_RESULT else run.status
            yield ToolUpdate(run.call, status, run.outcome.content, shared=setup.shared)
        executed = [r for r in runs if r.outcome.content != REJECTED_RESULT]
        if not executed:
            await self.turns.store.set_stream_state(post_id, "done")
            yield Finished(Finish.END_TURN)
            return
        if not req.ctx.is_direct_message:
            await self.turns.store.set_stream_state(post_id, "paused")
            yield ApprovalRequired(tuple(ToolUpdate(r.call, r.status, r.outcome.content) for r in executed), "result")
            yield Finished(Finish.AWAITING_APPROVAL)
            return
        _, messages = await self._prepare(req, conversation, agent, provider, True, web_search)
        citations = [c for r in executed for c in r.outcome.citations]
        async for event in self.turns.run(setup, messages, control="continue", citations=citations):
            yield event

    async def answer_question(self, post_id: str, call_id: str, answer: str) -> AsyncIterator[TurnEvent]:
        """Answer the paused turn's question with one of its options, and resume the turn with the
        answer as the question's result. The question waits in the store, so any replica, after
        any restart, takes the answer."""
        record = await self.turns.owned_stream(post_id)
        req = RespondInput.from_params(record.params, post_id)
        await self.turns.registry.check_access(req.ctx)
        _, call = await self.turns.store.update_anchor(post_id, lambda t: answer_blocks(t.content, call_id, answer))
        conversation = await self._conversation(record)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        tools_allowed, web_search = await self.capabilities(req.ctx, agent, req.automated_invoker)
        await self._start_stream(conversation, req)
        setup, _ = await self._prepare(
            req, conversation, agent, provider, tools_allowed, web_search, with_history=False
        )
        run = ToolRun(call, ToolOutcome(answer_result(answer), False))
        await self.turns.loop.persist_results(setup, [run], shared=True)
        messages = await self._messages(req, conversation, agent)
        yield Bound(conversation.id)
        yield ToolUpdate(call, ToolStatus.SUCCESS, run.outcome.content, shared=setup.shared)
        async for event in self.turns.run(setup, messages, control="continue"):
            yield event

    async def share_results(self, post_id: str, accepted_ids: Sequence[str]) -> AsyncIterator[TurnEvent]:
        """Channel turns: share the chosen tool results into the channel, then run the follow-up."""
        record = await self.turns.owned_stream(post_id)
        req = RespondInput.from_params(record.params, post_id)
        await self.turns.registry.check_access(req.ctx)
        conversation = await self._conversation(record)
        turns = await self.turns.store.turns(conversation.id)
        waiting = next((t for t in reversed(turns) if t.role == TurnRole.TOOL_RESULT), None)
        if waiting is None or not any(not b.get("shared") and "decided_at" not in b for b in waiting.content):
            raise FailedPrecondition("no tool results are waiting to be shared on this post")
        wanted = set(accepted_ids)
        stamped = [{**b, "shared": b.get("tool_use_id") in wanted, "decided_at": now_ms()} for b in waiting.content]
        await self.turns.store.update_turn(waiting.id, stamped)
        agent, provider = await self.turns.agent_and_provider(req.ctx.agent_id)
        _, web_search = await self.capabilities(req.ctx, agent, req.automated_invoker)
        await self._start_stream(conversation, req)
        setup, messages = await self._prepare(req, conversation, agent, provider, True, web_search)
        yield Bound(conversation.id)
        async for event in self.turns.run(setup, messages, control="continue"):
            yield event

    async def stop(self, post_id: str) -> None:
        """Stop the stream writing into a post, wherever it runs."""
        await self.turns.owned_stream(post_id)
        await self.turns.store.request_stop(post_id)
        self.turns.stops.stop_local(post_id)

    # ---- shared steps --------------------------------------------------------------------------

    async def _conversation(self, record: StreamRecord) -> Conversation:
        conversation = await self.turns.store.get_conversation(record.conversation_id)
        if conversation is None:
            raise NotFound("the conversation of this post no longer exists")
        return conversation

    async def _start_stream(self, conversation: Conversation, req: RespondInput, *, first: bool = False) -> bool:
        return await self.turns.store.start_stream(
            response_post_id=req.response_post_id,
            conversation_id=conversation.id,
            user_id=req.ctx.user_id,
            request_post_id=req.post_id,
            kind=Operation.CONVERSATION,
            params=req.as_params(),
            first=first,
        )

    async def capabilities(self, ctx: RequestContext, agent: AgentProfile, automated: bool) -> tuple[bool, bool]:
        """(tools allowed, native web search allowed) for this context."""
        if ctx.is_direct_message:
            return not agent.disable_tools, agent.native_web_search
        policy = await self.turns.registry.channel_policy()
        tools = policy.tools_in_channels and not agent.disable_tools
        return tools, agent.native_web_search and policy.native_web_search_in_channels

    async def _system_prompt(
        self, ctx: RequestContext, agent: AgentProfile, provider: Provider, *, tools_note: bool
    ) -> str:
        mm = self.turns.mattermost
        user = await mm.get_user(ctx.user_id)
        channel_name = team_name = ""
        if not ctx.is_direct_message and ctx.channel_id:
            channel = await mm.get_channel(ctx.channel_id)
            channel_name = channel.display_name or channel.name
            if channel.team_id:
                team = await mm.get_team(channel.team_id)
                team_name = team.display_name or team.name
        timezone = ctx.user_timezone or user.preferred_timezone
        return system_prompt(
            agent_prompt_context(
                agent,
                provider,
                user_username=user.username,
                user_full_name=f"{user.first_name} {user.last_name}".strip(),
                user_position=user.position,
                user_is_admin=user.is_system_admin,
                user_timezone=timezone,
                user_locale=user.locale,
                channel_name=channel_name,
                team_name=team_name,
                is_direct_message=ctx.is_direct_message,
                tools_disabled_note=tools_note,
            )
        )

    async def _prepare(
        self,
        req: RespondInput,
        conversation: Conversation,
        agent: AgentProfile,
        provider: Provider,
        tools_allowed: bool,
        web_search: bool,
        *,
        with_history: bool = True,
    ) -> tuple[TurnSetup, list[Message]]:
        tools = {}
        if tools_allowed:
            listed = await self.turns.tools.list_tools(req.ctx, conversation.id, automated=req.automated_invoker)
            tools = {t.name: t for t in listed}
        setup = TurnSetup(
            conversation=conversation,
            ctx=req.ctx,
            agent=agent,
            provider=provider,
            response_post_id=req.response_post_id,
            operation=str(Operation.CONVERSATION),
            tools=tools,
            native_web_search=web_search,
            shared=req.ctx.is_direct_message,
        )
        if not with_history:
            return setup, []
        return setup, await self._messages(req, conversation, agent)

    async def _messages(self, req: RespondInput, conversation: Conversation, agent: AgentProfile) -> list[Message]:
        mm = self.turns.mattermost
        posts = await read_thread(mm, req.ctx.user_id, req.ctx.channel_id, req.root_post_id or req.post_id)
        attachments = await read_attachments(mm, posts, vision=agent.enable_vision, max_file_size=agent.max_file_size)
        users = await mm.get_users_by_ids(sorted({p.user_id for p in posts}))
        answers = await self.turns.store.response_posts(conversation.id)
        turns = await self.turns.store.turns(conversation.id)
        history = build_history(
            posts,
            turns,
            bot_user_id=agent.bot_user_id,
            requester_id=req.ctx.user_id,
            current_post_id=req.post_id,
            response_post_ids=answers,
            usernames={u.id: u.username for u in users},
            attachments=attachments,
            is_direct_message=req.ctx.is_direct_message,
            current_message=req.message,
        )
        return [Message.text(Role.SYSTEM, conversation.system_prompt), *history]


def _decide(blocks: list[Block], accepted_ids: Sequence[str]) -> tuple[list[Block], Decision]:
    decision = apply_decision(blocks, accepted_ids)
    return decision.blocks, decision
