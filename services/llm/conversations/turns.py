"""What every kind of turn shares (``AgentTurns``): the services a turn talks to, resolving the
agent and its provider, the requester check, and running the loop inside the "agent run" span,
the stop watch and the stream's state row; then a new conversation's title."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

from services.common import attributes
from services.common.errors import DomainError, InvalidInput, NotFound, PermissionDenied
from services.common.identity import identity
from services.common.mattermost.client import MattermostClient
from services.common.telemetry import tracer
from services.llm.conversations.agent_registry import AgentProfile, AgentRegistry
from services.llm.conversations.agent_tools import AgentTools
from services.llm.conversations.calls import ModelCalls, attribution_for
from services.llm.conversations.loop import AgentLoop, TurnSetup
from services.llm.conversations.model import Control, Finish, Finished, RequestContext, StreamRecord, Title, TurnEvent
from services.llm.conversations.prompts import TITLE_INSTRUCTION, TITLE_MAX_TOKENS, PromptContext, clean_title
from services.llm.conversations.stops import StopWatcher
from services.llm.conversations.store import ConversationStore
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Message,
    Provider,
    Role,
    StreamError,
)

logger = logging.getLogger(__name__)

_STATES = {Finish.AWAITING_APPROVAL: "paused", Finish.STOPPED: "stopped", Finish.ERROR: "error"}


class ProviderSource(Protocol):
    """The llm service's shared provider cache (``services.llm.catalog.ProviderCatalog``)."""

    async def get(self, service_id: str) -> Provider:
        """The provider of a saved service."""
        ...


class AgentTurns:
    """The services every turn uses, and the steps every kind of turn shares. One per process."""

    def __init__(
        self,
        store: ConversationStore,
        registry: AgentRegistry,
        tools: AgentTools,
        providers: ProviderSource,
        calls: ModelCalls,
        mattermost: MattermostClient,
        stops: StopWatcher,
    ) -> None:
        self.store = store
        self.registry = registry
        self.tools = tools
        self.providers = providers
        self.calls = calls
        self.mattermost = mattermost
        self.stops = stops
        self.loop = AgentLoop(store, tools, calls)
        self._after: set[asyncio.Task[None]] = set()

    async def agent_and_provider(self, agent_id: str) -> tuple[AgentProfile, Provider]:
        """The agent and the provider of its service."""
        agent = await self.registry.agent(agent_id)
        return agent, await self.providers.get(agent.service_id)

    async def run(
        self,
        setup: TurnSetup,
        messages: list[Message],
        *,
        control: str = "start",
        title: str = "",
        title_job: Callable[[], Awaitable[str]] | None = None,
        kind: str = "conversation",
        citations: Sequence[Annotation] = (),
        prepare: Callable[[], Awaitable[list[Message]]] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """The events of one turn: ``control``, an optional fixed title, the loop's events, then
        ``Finished``. The post's stream row tracks its state. ``title_job`` (a new conversation's
        generated title) starts once the answer has ended and runs on its own.
        ``citations``: sources of tool results that ran before the turn resumed. ``prepare``:
        slow work that builds the messages (a long transcript's part summaries), run after the
        first event so the caller is answered at once; its failure ends the turn as an error."""
        span = tracer(__name__).start_span(
            "agent run",
            attributes={
                attributes.AGENT_ID: setup.agent.id,
                attributes.AGENT_NAME: setup.agent.username,
                attributes.USER_ID: setup.ctx.user_id,
                attributes.CHANNEL_ID: setup.ctx.channel_id,
                attributes.POST_ID: setup.response_post_id,
                attributes.LLM_OPERATION: kind,
                attributes.LLM_MODEL: setup.model,
                attributes.LLM_PROVIDER: str(setup.provider.settings.type),
            },
        )
        setup.span = span
        finish = Finish.ERROR
        try:
            async with self.stops.watch(setup.response_post_id) as stop:
                yield Control(control)
                if title:
                    yield Title(title)
                failed = None
                if prepare is not None:
                    try:
                        messages = await prepare()
                    except DomainError as err:  # provider errors included
                        failed = StreamError(err.error_class, err.message)
                if failed is not None:
                    yield failed
                else:
                    async for event in self.loop.run(setup, messages, stop, citations):
                        if isinstance(event, Finished):
                            finish = event.reason
                            break
                        yield event
        finally:
            # Recorded before anyone hears that the turn ended; nothing after it changes it.
            span.set_attribute("agents.conversation.finish", str(finish))
            span.end()
            try:
                await asyncio.shield(self.store.set_stream_state(setup.response_post_id, _STATES.get(finish, "done")))
            except Exception:  # the turn's own outcome matters more than its bookkeeping
                logger.warning("could not record the end of stream %s", setup.response_post_id, exc_info=True)
        if title_job is not None:
            # Secondary work after the answer: it neither delays the answer's first token nor
            # holds the end of the turn, and whatever becomes of it cannot change the answer.
            self._after_turn(title_job)
        yield Finished(finish)

    def _after_turn(self, job: Callable[[], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                await job()
            except Exception:
                logger.warning("work after a turn failed", exc_info=True)

        task = asyncio.create_task(run(), name="after turn")
        self._after.add(task)
        task.add_done_callback(self._after.discard)

    async def close(self) -> None:
        """Shutdown: cancel the work still running after ended turns (titles)."""
        tasks = list(self._after)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def generate_title(self, ctx: RequestContext, agent: AgentProfile, conversation_id: str, request: str) -> str:
        """Generate and store a conversation title (one short non-streamed call)."""
        call = CompletionRequest(
            messages=(Message.text(Role.SYSTEM, TITLE_INSTRUCTION), Message.text(Role.USER, request[:4000])),
            model=agent.model,
            max_output_tokens=TITLE_MAX_TOKENS,
            operation="title_generation",
        )
        try:
            result = await self.calls.complete(agent.service_id, call, attribution_for(ctx, agent, call.operation))
        except DomainError as err:
            logger.info("title generation failed: %s", err.message)
            return ""
        title = clean_title(result.text)
        if title:
            await self.store.set_title(conversation_id, title)
        return title

    async def owned_stream(self, post_id: str) -> StreamRecord:
        """The stream record of a bot post, if the caller is its requester."""
        if not post_id:
            raise InvalidInput("post_id is required", field="post_id")
        record = await self.store.get_stream(post_id)
        if record is None:
            raise NotFound("no conversation owns this post")
        if caller_id() != record.user_id:
            raise PermissionDenied("only the user who asked can do this")
        return record


def caller_id(ctx: RequestContext | None = None) -> str:
    """The user a call runs for: the identity in metadata, else the request's context."""
    user = identity().user_id
    if user:
        if ctx is not None and ctx.user_id and ctx.user_id != user:
            raise PermissionDenied("the request's user does not match the caller")
        return user
    return ctx.user_id if ctx is not None else ""


def agent_prompt_context(agent: AgentProfile, provider: Provider, **about_the_request: Any) -> PromptContext:
    """The system prompt's context: who the agent is, plus who asks and where."""
    return PromptContext(
        bot_name=agent.display_name,
        bot_username=agent.username,
        model=agent.model or provider.settings.default_model,
        custom_instructions=agent.custom_instructions,
        **about_the_request,
    )
