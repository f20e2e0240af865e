"""How a turn calls the model: through the llm service's observed completions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from services.llm.completion import Attribution
from services.llm.conversations.agent_registry import AgentProfile
from services.llm.conversations.model import RequestContext
from services.llm.providers.base import CompletionRequest, Event
from services.llm.streaming import CompletionResult
from services.llm.tokens import TokenCounter


class ModelCalls(Protocol):
    """``services.llm.completion.CompletionService``: every model call of a turn goes through it,
    so it is trimmed, retried, traced, counted in the metrics and written to the token usage log
    exactly like an LLM RPC."""

    def stream(
        self, service_id: str, request: CompletionRequest, attribution: Attribution
    ) -> AsyncGenerator[Event, None]:
        """Events of one call; raises a domain error when refused before the first event."""
        ...

    async def complete(self, service_id: str, request: CompletionRequest, attribution: Attribution) -> CompletionResult:
        """One call gathered; raises a domain error on any failure."""
        ...

    async def counter(self, model: str) -> TokenCounter:
        """The token counter the calls trim ``model``'s prompts with (to size work before a call)."""
        ...


def attribution_for(ctx: RequestContext, agent: AgentProfile, operation: str) -> Attribution:
    """Who a turn's model call is for, as usage logs, metrics and spans record it."""
    return Attribution(user_id=ctx.user_id, team_id=ctx.team_id, agent_username=agent.username, operation=operation)
