"""Reading conversations back: one with its turns, or the caller's list."""

from __future__ import annotations

from dataclasses import replace

from services.common.errors import InvalidInput, NotFound, PermissionDenied
from services.common.mattermost.client import MattermostClient
from services.llm.conversations.blocks import strip_for_reader
from services.llm.conversations.model import Conversation, Turn
from services.llm.conversations.store import ConversationStore
from services.llm.conversations.turns import caller_id

DEFAULT_PAGE_SIZE = 60
MAX_PAGE_SIZE = 200


class ConversationReader:
    """GetConversation and ListConversations as the caller may see them (tool data only where shared)."""

    def __init__(self, store: ConversationStore, mattermost: MattermostClient) -> None:
        self.store = store
        self.mattermost = mattermost

    async def get(self, conversation_id: str) -> tuple[Conversation, list[Turn]]:
        """The conversation and its turns; readers other than the owner need read access to its
        channel and see tool inputs and results only where the owner shared them."""
        if not conversation_id:
            raise InvalidInput("id is required", field="id")
        conversation = await self.store.get_conversation(conversation_id)
        if conversation is None:
            raise NotFound("conversation not found")
        caller = caller_id()
        turns = await self.store.turns(conversation.id)
        if caller == conversation.user_id:
            return conversation, turns
        if not caller or not conversation.channel_id:
            raise PermissionDenied("only the owner can read this conversation")
        if not await self.mattermost.user_can_read_channel(caller, conversation.channel_id):
            raise PermissionDenied("you cannot read this conversation's channel")
        return conversation, [replace(t, content=strip_for_reader(t.content)) for t in turns]

    async def list(self, page_size: int, page_token: str) -> tuple[list[Conversation], str]:
        """The caller's conversations, newest first, and the next page's token ("" at the end)."""
        caller = caller_id()
        if not caller:
            raise PermissionDenied("a user is required")
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        try:
            offset = int(page_token) if page_token else 0
        except ValueError:
            raise InvalidInput("invalid page_token", field="page_token") from None
        items = await self.store.list_conversations(caller, size + 1, max(offset, 0))
        next_token = str(offset + size) if len(items) > size else ""
        return items[:size], next_token
