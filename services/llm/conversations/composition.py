"""A conversation's context composition: how the tokens of its next request divide between the
system prompt, the history, tool definitions, tool results and images (the webapp's context bar,
the plugin's ``GET /conversations/{id}/context``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from services.common.errors import DomainError, NotFound
from services.common.mattermost.attachments import VISION_MIME_TYPES
from services.llm.conversations.agent_registry import AgentProfile
from services.llm.conversations.answers import PostAnswers
from services.llm.conversations.blocks import turn_messages
from services.llm.conversations.model import Conversation, Operation, RequestContext, Turn, TurnRole
from services.llm.conversations.reads import ConversationReader
from services.llm.providers.base import Message, Role
from services.llm.tokens import IMAGE_TOKENS, ApproximateCounter, TokenCounter, count_messages


@dataclass(frozen=True)
class ContextShare:
    """One source's tokens and its share of the total."""

    source: str
    tokens: int
    proportion: float


@dataclass(frozen=True)
class Composition:
    """The composition of a conversation's next request."""

    components: list[ContextShare]
    total: int
    total_source: str  # counted (the model's tokenizer) or estimated (by length)
    input_token_limit: int
    model: str


class ConversationComposition:
    """Rebuilds what the next turn of a conversation would send and counts it with the counter the
    turn's trimming uses; readable by whoever may read the conversation."""

    def __init__(self, reader: ConversationReader, answers: PostAnswers) -> None:
        self.reader = reader
        self.answers = answers

    async def compose(self, conversation_id: str) -> Composition:
        """The composition of the conversation's next request; NotFound, PermissionDenied as for
        reading the conversation."""
        conversation, turns = await self.reader.get(conversation_id)
        ctx = await self._context(conversation)
        agent, provider = await self.answers.turns.agent_and_provider(ctx.agent_id)
        model = agent.model or provider.settings.default_model
        counter = await self.answers.turns.calls.counter(model)
        tokens = {
            "system": count_messages(counter, [Message.text(Role.SYSTEM, conversation.system_prompt)]),
            "history": _turn_tokens(counter, [t for t in turns if t.role != TurnRole.TOOL_RESULT]),
            "tool_defs": await self._tool_tokens(counter, conversation, ctx, agent),
            "tool_results": _turn_tokens(counter, [t for t in turns if t.role == TurnRole.TOOL_RESULT]),
            "image": await self._image_tokens(turns) if agent.enable_vision else 0,
        }
        total = sum(tokens.values())
        components = [ContextShare(s, n, n / total if total else 0.0) for s, n in tokens.items() if n]
        return Composition(
            components=components,
            total=total,
            total_source="estimated" if isinstance(counter, ApproximateCounter) else "counted",
            input_token_limit=provider.settings.input_token_limit,
            model=model,
        )

    async def _context(self, conversation: Conversation) -> RequestContext:
        """Where and for whom the conversation's turns run, as its latest stream recorded it."""
        for post_id in reversed(await self.answers.turns.store.response_posts(conversation.id)):
            record = await self.answers.turns.store.get_stream(post_id)
            if record is not None:
                context = record.params.get("context")
                return RequestContext.from_params(dict(context) if isinstance(context, dict) else {})
        raise NotFound("the conversation has no answer yet")

    async def _tool_tokens(
        self, counter: TokenCounter, conversation: Conversation, ctx: RequestContext, agent: AgentProfile
    ) -> int:
        """The tool definitions a turn sends: a conversation's, or a channel analysis's bound
        readers (other analyses and summaries send none)."""
        if not ctx.bound_channel_id:
            if conversation.operation != Operation.CONVERSATION:
                return 0
            allowed, _ = await self.answers.capabilities(ctx, agent, False)
            if not allowed:
                return 0
        tools = await self.answers.turns.tools.list_tools(ctx, conversation.id, automated=False)
        return sum(counter.count_text(t.name + t.description + json.dumps(t.input_schema)) for t in tools)

    async def _image_tokens(self, turns: list[Turn]) -> int:
        """Images the thread reader inlines for a vision agent, at the estimate trimming uses."""
        images = 0
        for turn in turns:
            for block in turn.content:
                if block.get("type") != "file" or not block.get("file_id"):
                    continue
                try:
                    info = await self.answers.turns.mattermost.get_file_info(str(block["file_id"]))
                except DomainError:  # a deleted file is not sent either
                    continue
                images += info.mime_type in VISION_MIME_TYPES
        return images * IMAGE_TOKENS


def _turn_tokens(counter: TokenCounter, turns: list[Turn]) -> int:
    return count_messages(counter, [m for t in turns for m in turn_messages(t)])
