"""Bridge completions with tools (``allowed_tools`` of a ``/bridge/v1`` completion): the agent
loop run for a plugin's request, with nothing stored.

As in the plugin, the listed tools run without asking, as the request's user, and only the
agent's MCP tools can be listed (the ones ``GET /bridge/v1/agents/{agent}/tools`` shows that user,
whose context they share: a DM with the agent). The model's tool calls and their results stay
inside the loop; the caller gets the answer's events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace

from services.common.errors import InvalidInput
from services.llm.completion import Attribution
from services.llm.conversations.loop import TurnSetup
from services.llm.conversations.model import Finish, Finished, RequestContext
from services.llm.conversations.turns import AgentTurns
from services.llm.providers.base import (
    Annotation,
    CompletionRequest,
    Done,
    Event,
    ReasoningDelta,
    StopReason,
    StreamError,
    TextDelta,
    Usage,
)

_STOP_REASONS = {finish: StopReason(finish.value) for finish in Finish if finish.value in set(StopReason)}


class BridgeTools:
    """Runs bridge completions whose model may call tools."""

    def __init__(self, turns: AgentTurns) -> None:
        self.turns = turns

    async def stream(
        self, request: CompletionRequest, attribution: Attribution, agent_id: str, allowed_tools: Sequence[str]
    ) -> AsyncGenerator[Event, None]:
        """The answer's events, ending with ``Done``; ``InvalidInput`` before the first when a tool
        is not one of the agent's MCP tools for the user."""
        if not attribution.user_id:
            raise InvalidInput("allowed_tools require user_id: tools run as a user", field="user_id")
        agent, provider = await self.turns.agent_and_provider(agent_id)
        ctx = RequestContext(
            user_id=attribution.user_id, agent_id=agent.id, team_id=attribution.team_id, is_direct_message=True
        )
        offered = {t.name: t for t in await self.turns.tools.list_tools(ctx, "", automated=False) if t.server_origin}
        missing = sorted(set(allowed_tools) - offered.keys())
        if missing:
            raise InvalidInput(
                f"allowed_tools names tools agent {agent.username} does not offer this user: {', '.join(missing)}",
                field="allowed_tools",
            )
        setup = TurnSetup(
            conversation=None,
            ctx=ctx,
            agent=agent,
            provider=provider,
            response_post_id="",
            operation=attribution.operation,
            tools={name: replace(offered[name], auto_approved=True) for name in allowed_tools},
            native_web_search=agent.native_web_search,
            shared=False,
            request=request,
        )
        async for event in self.turns.loop.run(setup, list(request.messages), asyncio.Event()):
            if isinstance(event, TextDelta | ReasoningDelta | Annotation | Usage | StreamError):
                yield event
            elif isinstance(event, Finished):
                yield Done(_STOP_REASONS.get(event.reason, StopReason.END_TURN))
