"""The agent loop: call the model, forward its events, run or pause on tool calls, repeat.

Each round's output is persisted as one assistant turn when the round ends (never per token),
anchored on the bot post being written; tool results follow as a ``tool_result`` turn. Each
round's prompt is trimmed to the service's input limit by the completion path it goes through
(``ModelCalls``), with the one token counter the service uses for the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry import trace

from services.common.errors import DomainError
from services.llm.conversations.agent_registry import AgentProfile
from services.llm.conversations.agent_tools import AgentTools, ToolOutcome, ToolRun
from services.llm.conversations.approvals import (
    FAILURE_CAP_INSTRUCTION,
    AvailableTool,
    PlanKind,
    plan_tool_calls,
    tools_exhausted,
)
from services.llm.conversations.blocks import assistant_blocks, tool_result_block
from services.llm.conversations.calls import ModelCalls, attribution_for
from services.llm.conversations.interrupt import StopInterrupt, Stopped
from services.llm.conversations.model import (
    ApprovalRequired,
    Conversation,
    Finish,
    Finished,
    RequestContext,
    RoundOutput,
    ToolStatus,
    ToolUpdate,
    TurnEvent,
    TurnRole,
)
from services.llm.conversations.questions import QUESTION_STAGE, asked_question
from services.llm.conversations.store import ConversationStore
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Message,
    Part,
    Provider,
    ReasoningEffort,
    ReasoningOptions,
    ReasoningPart,
    Role,
    StopReason,
    StreamError,
    TextPart,
    ToolResult,
    ToolSpec,
)

logger = logging.getLogger(__name__)

# The plugin's limits: at most 10 model calls per turn; two rounds before the end the model is
# told to answer with what it has, and tools are withdrawn.
MAX_TOOL_ROUNDS = 10
BUDGET_EXHAUSTED_MESSAGE = (
    "The tool budget for this request is exhausted. Answer now from the results you already have, "
    "or say what you tried and what is still missing."
)
_FINISH = {
    StopReason.END_TURN: Finish.END_TURN,
    StopReason.TOOL_USE: Finish.END_TURN,
    StopReason.MAX_TOKENS: Finish.MAX_TOKENS,
    StopReason.CONTENT_FILTER: Finish.CONTENT_FILTER,
    StopReason.STOPPED: Finish.STOPPED,
    StopReason.ERROR: Finish.ERROR,
}


@dataclass
class TurnSetup:
    """Everything fixed for the duration of one turn."""

    # None: a bridge completion, of which nothing is stored.
    conversation: Conversation | None
    ctx: RequestContext
    agent: AgentProfile
    provider: Provider
    response_post_id: str
    operation: str
    tools: dict[str, AvailableTool] = field(default_factory=dict)
    native_web_search: bool = False
    # Tool blocks are visible to channel members (1:1 DMs) or private to the requester (channels).
    shared: bool = True
    span: trace.Span | None = None
    # A bridge completion's own request (its model, limits, schema): each round sends it with the
    # round's messages and tools.
    request: CompletionRequest | None = None

    @property
    def model(self) -> str:
        """The model the turn calls: the agent's, else the service's default."""
        return self.agent.model or self.provider.settings.default_model


class AgentLoop:
    """Runs model rounds for a turn and persists them."""

    def __init__(self, store: ConversationStore, tools: AgentTools, calls: ModelCalls) -> None:
        self.store = store
        self.tools = tools
        self.calls = calls

    async def run(
        self,
        setup: TurnSetup,
        messages: list[Message],
        stop: asyncio.Event,
        citations: Sequence[Annotation] = (),
    ) -> AsyncIterator[TurnEvent]:
        """Rounds until the model answers, pauses for approval, is stopped or fails; the last
        event is always ``Finished``. ``citations`` are sources of tool results gathered before
        the turn (an approved web search): they decorate the answer like the loop's own."""
        sources = list(citations)
        for round_no in range(MAX_TOOL_ROUNDS):
            prompt, tools = _round_prompt(messages, setup.tools, round_no)
            output = RoundOutput()
            saved = False
            try:
                async for event in self._stream_round(setup, self._request(setup, prompt, tools), stop, output):
                    yield event
                # Calls proposed when tools were withdrawn are dropped, as the plugin does.
                if not tools:
                    output.tool_calls = []
                if output.stopped or output.error is not None or not output.tool_calls:
                    extra = await self._persist_answer(setup, output, sources)
                    saved = True
                    for end_event in (*extra, *_answer_end(output)):
                        yield end_event
                    return
                plan = plan_tool_calls(output.tool_calls, tools)
                if plan.kind in (PlanKind.ASK, PlanKind.QUESTION):
                    stage = "call"
                    if plan.kind == PlanKind.QUESTION:
                        # The question alone waits: the model calls the rest again once answered.
                        stage, output.tool_calls = QUESTION_STAGE, [asked_question(output.tool_calls)]
                    statuses = {c.id: ToolStatus.PENDING for c in output.tool_calls}
                    await self._persist_round(setup, output, statuses)
                    saved = True
                    pending = tuple(ToolUpdate(c, ToolStatus.PENDING, shared=setup.shared) for c in output.tool_calls)
                    yield ApprovalRequired(pending, stage)
                    yield Finished(Finish.AWAITING_APPROVAL)
                    return
                if plan.kind == PlanKind.SKIP:
                    runs = [ToolRun(c, ToolOutcome(plan.errors[c.id], True)) for c in output.tool_calls]
                    statuses = {c.id: ToolStatus.ERROR for c in output.tool_calls}
                else:
                    conversation_id = setup.conversation.id if setup.conversation else ""
                    runs = await self.tools.run(setup.ctx, conversation_id, output.tool_calls, setup.span)
                    statuses = {r.call.id: ToolStatus.AUTO_APPROVED for r in runs}
                await self._persist_round(setup, output, statuses)
                saved = True
                await self.persist_results(setup, runs, shared=True)
            except BaseException:
                # Stopped from outside, failed, timed out or shut down mid-round: keep what the
                # round wrote so far (its unexecuted tool calls would have no results: dropped).
                if not saved:
                    output.tool_calls = []
                    await self._save_partial(setup, output)
                raise
            for run in runs:
                sources.extend(run.outcome.citations)
                yield ToolUpdate(run.call, run.status, run.outcome.content, shared=setup.shared)
            messages.append(assistant_message(output))
            messages.append(results_message(runs))
        yield Finished(Finish.END_TURN)  # unreachable in practice: the last rounds have no tools

    async def _persist_answer(
        self, setup: TurnSetup, output: RoundOutput, sources: list[Annotation]
    ) -> list[Annotation]:
        """Persists the round that answers; tool sources it does not show yet decorate it as
        annotations, returned to be streamed."""
        shown = {a.url for a in output.annotations}
        extra = _unique([a for a in sources if a.url not in shown])
        output.annotations.extend(extra)
        await self._persist_round(setup, output, {})
        return extra

    async def _save_partial(self, setup: TurnSetup, output: RoundOutput) -> None:
        try:
            # Shielded: the save must finish even though the turn's task is being cancelled.
            await asyncio.shield(self._persist_round(setup, output, {}))
        except asyncio.CancelledError:
            logger.warning("saving the partial answer of %s was cut short", setup.response_post_id)
        except Exception:
            logger.warning("could not save the partial answer of %s", setup.response_post_id, exc_info=True)

    def _request(self, setup: TurnSetup, messages: list[Message], tools: dict[str, AvailableTool]) -> CompletionRequest:
        agent = setup.agent
        reasoning = ReasoningOptions()
        if agent.reasoning_enabled:
            # The switch alone turns reasoning on: no effort set (new agents have none) means
            # the plugin's default, medium; no budget means the provider's own default.
            try:
                effort = ReasoningEffort(agent.reasoning_effort)
            except ValueError:
                effort = ReasoningEffort.MEDIUM
            reasoning = ReasoningOptions(enabled=True, effort=effort, budget_tokens=agent.thinking_budget)
        specs = tuple(ToolSpec(t.name, t.description, dict(t.input_schema)) for t in tools.values())
        if setup.request is not None:
            return replace(
                setup.request, messages=tuple(messages), tools=specs, native_web_search=setup.native_web_search
            )
        return CompletionRequest(
            messages=tuple(messages),
            model=agent.model,
            tools=specs,
            reasoning=reasoning,
            native_web_search=setup.native_web_search,
            user_id=setup.ctx.user_id,
            operation=setup.operation,
        )

    async def _stream_round(
        self, setup: TurnSetup, request: CompletionRequest, stop: asyncio.Event, out: RoundOutput
    ) -> AsyncIterator[TurnEvent]:
        """Forward one model call's events, gathering them into ``out``; ends early on stop."""
        if stop.is_set():
            out.stopped = True
            return
        attribution = attribution_for(setup.ctx, setup.agent, setup.operation)
        stream = self.calls.stream(setup.agent.service_id, request, attribution)
        interrupt = StopInterrupt(stop)
        try:
            while True:
                try:
                    event = await interrupt.next(stream)
                except Stopped:
                    out.stopped = True
                    return
                except StopAsyncIteration:
                    return
                except DomainError as err:  # refused before the first token
                    out.error = StreamError(err.error_class, err.message)
                    return
                if out.add(event):
                    yield event
                elif isinstance(event, Done):
                    return
        finally:
            interrupt.close()
            await stream.aclose()

    async def _persist_round(self, setup: TurnSetup, output: RoundOutput, statuses: dict[str, ToolStatus]) -> None:
        blocks = assistant_blocks(output, statuses, shared=setup.shared)
        if not blocks or setup.conversation is None:
            return
        await self.store.append_turn(
            setup.conversation.id,
            TurnRole.ASSISTANT,
            blocks,
            post_id=setup.response_post_id,
            tokens_in=output.usage.input_tokens,
            tokens_out=output.usage.output_tokens,
        )

    async def persist_results(self, setup: TurnSetup, runs: list[ToolRun], *, shared: bool) -> None:
        """Store tool results as one ``tool_result`` turn (private to the requester unless shared)."""
        if not runs or setup.conversation is None:
            return
        blocks = [
            tool_result_block(
                r.call.id, r.call.name, r.outcome.content, is_error=r.outcome.is_error, shared=shared and setup.shared
            )
            for r in runs
        ]
        await self.store.append_turn(setup.conversation.id, TurnRole.TOOL_RESULT, blocks)


def _round_prompt(
    messages: list[Message], tools: dict[str, AvailableTool], round_no: int
) -> tuple[list[Message], dict[str, AvailableTool]]:
    """The round's prompt and tools: once tools keep failing, or two rounds before the budget
    ends, the tools are withdrawn and the model is told to answer."""
    if tools and tools_exhausted(messages):
        return [*messages, Message.text(Role.SYSTEM, FAILURE_CAP_INSTRUCTION)], {}
    if tools and round_no >= MAX_TOOL_ROUNDS - 2:
        return [*messages, Message.text(Role.USER, BUDGET_EXHAUSTED_MESSAGE)], {}
    return list(messages), tools


def _answer_end(output: RoundOutput) -> tuple[TurnEvent, ...]:
    """The events that end a turn on the model's answer: its error if any, then ``Finished``."""
    if output.error is not None:
        return output.error, Finished(Finish.ERROR)
    if output.stopped:
        return (Finished(Finish.STOPPED),)
    return (Finished(_FINISH.get(StopReason(output.finish), Finish.END_TURN)),)


def _unique(annotations: list[Annotation]) -> list[Annotation]:
    seen: set[str] = set()
    out = []
    for a in annotations:
        if a.url not in seen:
            seen.add(a.url)
            out.append(a)
    return out


def assistant_message(output: RoundOutput) -> Message:
    """The round's output as the assistant message the next round sends back."""
    parts: list[Part] = []
    if output.reasoning or output.reasoning_signature:
        parts.append(ReasoningPart(output.reasoning, signature=output.reasoning_signature))
    if output.text:
        parts.append(TextPart(output.text))
    parts.extend(output.tool_calls)
    return Message(Role.ASSISTANT, tuple(parts))


def results_message(runs: list[ToolRun]) -> Message:
    """Tool results as the message the next round sends back."""
    return Message(
        Role.TOOL,
        tuple(ToolResult(r.call.id, r.call.name, r.outcome.content, is_error=r.outcome.is_error) for r in runs),
    )
