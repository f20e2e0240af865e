"""The conversation so far as provider messages: the Mattermost thread (what people actually
wrote, read with the cluster account but only when the requester may read the channel) merged
with the stored turns (the agent's tool calls and results, which posts do not hold)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from services.common.errors import DomainError, PermissionDenied
from services.common.mattermost.attachments import AttachedImage, AttachmentReader, describe
from services.common.mattermost.client import MattermostClient
from services.common.mattermost.models import Post
from services.llm.conversations.blocks import turn_messages
from services.llm.conversations.model import Turn, TurnRole
from services.llm.providers.base import ImagePart, Message, Part, Role, TextPart

logger = logging.getLogger(__name__)


async def read_thread(mm: MattermostClient, user_id: str, channel_id: str, root_id: str) -> list[Post]:
    """The thread's posts, oldest first. PermissionDenied when the requester may not read the
    channel: the cluster account can read everything, so the check is ours to make."""
    if channel_id and not await mm.user_can_read_channel(user_id, channel_id):
        raise PermissionDenied("you cannot read this channel")
    posts = await mm.get_post_thread(root_id)
    return [p for p in posts if not p.delete_at and (not channel_id or p.channel_id == channel_id)]


async def read_attachments(
    mm: MattermostClient, posts: Sequence[Post], *, vision: bool, max_file_size: int
) -> dict[str, list[Part]]:
    """Parts to add to user posts: text files' content, images inline for vision agents, other
    files named. The thread was read with the requester's permission, so its files may be too."""
    found: dict[str, list[Part]] = {}
    reader = AttachmentReader(mm, vision=vision, max_file_size=max_file_size)
    for post in reversed(posts):  # newest first: the current question's files matter most
        for file_id in post.file_ids:
            if reader.exhausted:
                return found
            try:
                attachment = await reader.read(await mm.get_file_info(file_id))
            except DomainError as err:
                logger.info("attachment %s skipped: %s", file_id, err.message)
                continue
            part: Part = (
                ImagePart(attachment.info.mime_type, attachment.data)
                if isinstance(attachment, AttachedImage)
                else TextPart(describe(attachment))
            )
            found.setdefault(post.id, []).append(part)
    return found


def group_turns(turns: Sequence[Turn]) -> dict[str, list[Turn]]:
    """The rounds answering each user post: every non-user turn after a user turn anchored on a
    post belongs to that post, until the next user turn."""
    groups: dict[str, list[Turn]] = {}
    current: list[Turn] | None = None
    for turn in turns:
        if turn.role == TurnRole.USER:
            current = groups.setdefault(turn.post_id, []) if turn.post_id else None
        elif current is not None:
            current.append(turn)
    return groups


def build_history(
    posts: Sequence[Post],
    turns: Sequence[Turn],
    *,
    bot_user_id: str,
    requester_id: str,
    current_post_id: str,
    response_post_ids: Sequence[str],
    usernames: dict[str, str],
    attachments: dict[str, list[Part]],
    is_direct_message: bool,
    current_message: str = "",
) -> list[Message]:
    """Thread posts up to the current one, with each answered post followed by its stored rounds.

    In channels, posts by other people are prefixed with their username so the model knows who
    said what, and tool results the requester did not share are redacted.
    """
    groups = group_turns(turns)
    answers = set(response_post_ids)
    messages: list[Message] = []
    seen_current = False
    for post in posts:
        if seen_current:
            break
        if post.user_id == bot_user_id:
            if post.id not in answers and post.message.strip():
                messages.append(Message.text(Role.ASSISTANT, post.message))
            continue
        text = post.message
        if not is_direct_message and post.user_id != requester_id:
            text = f"@{usernames.get(post.user_id, 'someone')}: {text}"
        parts: list[Part] = [TextPart(text)] if text.strip() else []
        parts += attachments.get(post.id, [])
        if parts:
            messages.append(Message(Role.USER, tuple(parts)))
        for turn in groups.get(post.id, []):
            messages += turn_messages(turn, redact_unshared=not is_direct_message)
        seen_current = post.id == current_post_id
    if not seen_current:
        # The post is not readable yet (or was deleted): answer what the request carried.
        parts = [TextPart(current_message)] if current_message.strip() else []
        parts += attachments.get(current_post_id, [])
        if parts:
            messages.append(Message(Role.USER, tuple(parts)))
        for turn in groups.get(current_post_id, []):
            messages += turn_messages(turn, redact_unshared=not is_direct_message)
    return messages
