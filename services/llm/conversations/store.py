"""Reads and writes of the conversation tables. SQL lives here and nowhere else in the loop."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import FailedPrecondition
from services.llm.conversations.blocks import now_ms
from services.llm.conversations.model import Block, Conversation, Operation, StreamRecord, Turn, TurnRole

T = TypeVar("T")

_TURN_COUNT = "(SELECT count(*) FROM llm_turns t WHERE t.conversationid = c.id) AS turn_count"
_CONVERSATION_COLUMNS = (
    "c.id, c.userid, c.botid, c.channelid, c.rootpostid, c.title, c.systemprompt, c.operation, c.createdat, c.updatedat"
)
_TURN_COLUMNS = "id, conversationid, postid, role, content, sequence, tokensin, tokensout, createdat"
_STREAM_COLUMNS = (
    "responsepostid, conversationid, userid, requestpostid, kind, params, noregen, state, stoprequested, runner"
)


def _storable(value: Any) -> Any:
    """``value`` without NUL characters, which PostgreSQL's text and jsonb cannot hold. A
    Mattermost post may carry one (nothing checks a post's text before it reaches us): the
    conversation keeps the text around it."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def _jsonb(value: Any) -> str:
    return json.dumps(_storable(value))


def new_id() -> str:
    """A 26-character id, the shape of Mattermost's ids."""
    return secrets.token_hex(13)


def _conversation(row: Any, turn_count: int = 0) -> Conversation:
    m = row._mapping
    return Conversation(
        id=m["id"],
        user_id=m["userid"],
        bot_id=m["botid"],
        channel_id=m["channelid"],
        root_post_id=m["rootpostid"],
        title=m["title"],
        system_prompt=m["systemprompt"],
        operation=m["operation"],
        created_at=m["createdat"],
        updated_at=m["updatedat"],
        turn_count=turn_count,
    )


def _from_jsonb(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _turn(row: Any) -> Turn:
    m = row._mapping
    return Turn(
        id=m["id"],
        conversation_id=m["conversationid"],
        post_id=m["postid"],
        role=TurnRole(m["role"]),
        content=list(_from_jsonb(m["content"]) or []),
        sequence=m["sequence"],
        tokens_in=m["tokensin"],
        tokens_out=m["tokensout"],
        created_at=m["createdat"],
    )


def _stream(row: Any) -> StreamRecord:
    m = row._mapping
    return StreamRecord(
        response_post_id=m["responsepostid"],
        conversation_id=m["conversationid"],
        user_id=m["userid"],
        request_post_id=m["requestpostid"],
        kind=Operation(m["kind"]),
        params=dict(_from_jsonb(m["params"]) or {}),
        no_regen=m["noregen"],
        state=m["state"],
        stop_requested=m["stoprequested"],
        runner=m["runner"],
    )


class ConversationStore:
    """The conversation, turn and stream tables' queries."""

    def __init__(self, engine: AsyncEngine, runner: str = "") -> None:
        self.engine = engine
        # This replica's gRPC address, recorded on the streams it runs (``Attach`` relays to it).
        self.runner = runner

    # ---- conversations -------------------------------------------------------------------------

    async def get_or_create_conversation(
        self,
        *,
        user_id: str,
        bot_id: str,
        channel_id: str | None,
        root_post_id: str,
        operation: str,
        system_prompt: str,
    ) -> tuple[Conversation, bool]:
        """The conversation of (thread root, bot, user), created with ``system_prompt`` if new.
        Two racing creators both end up with the same row (the unique index decides)."""
        now = now_ms()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO llm_conversations AS c (id, userid, botid, channelid, rootpostid, systemprompt, "
                        "operation, createdat, updatedat) VALUES (:id, :u, :b, :ch, :r, :sp, :op, :t, :t) "
                        "ON CONFLICT (rootpostid, botid, userid) WHERE rootpostid IS NOT NULL AND deleteat = 0 "
                        f"DO NOTHING RETURNING {_CONVERSATION_COLUMNS}"
                    ),
                    {
                        "id": new_id(),
                        "u": user_id,
                        "b": bot_id,
                        "ch": channel_id,
                        "r": root_post_id,
                        "sp": _storable(system_prompt),
                        "op": operation,
                        "t": now,
                    },
                )
            ).first()
            if row is not None:
                return _conversation(row), True
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_CONVERSATION_COLUMNS} FROM llm_conversations c WHERE c.rootpostid = :r "
                        "AND c.botid = :b AND c.userid = :u AND c.deleteat = 0"
                    ),
                    {"r": root_post_id, "b": bot_id, "u": user_id},
                )
            ).one()
            return _conversation(row), False

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """A conversation with its turn count; None when unknown or deleted."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_CONVERSATION_COLUMNS}, {_TURN_COUNT} FROM llm_conversations c "
                        "WHERE c.id = :id AND c.deleteat = 0"
                    ),
                    {"id": conversation_id},
                )
            ).first()
            return None if row is None else _conversation(row, row.turn_count)

    async def list_conversations(self, user_id: str, limit: int, offset: int) -> list[Conversation]:
        """The user's conversations, most recently updated first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_CONVERSATION_COLUMNS}, {_TURN_COUNT} FROM llm_conversations c "
                    "WHERE c.userid = :u AND c.deleteat = 0 "
                    "ORDER BY c.updatedat DESC, c.id LIMIT :l OFFSET :o"
                ),
                {"u": user_id, "l": limit, "o": offset},
            )
            return [_conversation(r, r.turn_count) for r in rows]

    async def set_title(self, conversation_id: str, title: str) -> None:
        """Sets the conversation's title."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE llm_conversations SET title = :t WHERE id = :id"),
                {"t": _storable(title), "id": conversation_id},
            )

    # ---- turns ---------------------------------------------------------------------------------

    async def turns(self, conversation_id: str) -> list[Turn]:
        """A conversation's turns, in order."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(f"SELECT {_TURN_COLUMNS} FROM llm_turns WHERE conversationid = :c ORDER BY sequence"),
                {"c": conversation_id},
            )
            return [_turn(r) for r in rows]

    async def append_turn(
        self,
        conversation_id: str,
        role: TurnRole,
        content: Sequence[Block],
        *,
        post_id: str | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
    ) -> Turn:
        """Append a turn with the next sequence number. An assistant turn anchored on a post takes
        the anchor from the post's earlier rounds (the plugin's continuation rule)."""
        for _attempt in range(5):
            try:
                async with self.engine.begin() as conn:
                    if post_id is not None and role == TurnRole.ASSISTANT:
                        await conn.execute(
                            text("UPDATE llm_turns SET postid = NULL WHERE postid = :p AND role = 'assistant'"),
                            {"p": post_id},
                        )
                    row = (
                        await conn.execute(
                            text(
                                "INSERT INTO llm_turns (id, conversationid, postid, role, content, tokensin, "
                                "tokensout, sequence, createdat) SELECT :id, :c, :p, :r, CAST(:content AS jsonb), "
                                ":ti, :to, COALESCE(MAX(sequence), 0) + 1, :t FROM llm_turns WHERE conversationid = :c "
                                f"RETURNING {_TURN_COLUMNS}"
                            ),
                            {
                                "id": new_id(),
                                "c": conversation_id,
                                "p": post_id,
                                "r": str(role),
                                "content": _jsonb(content),
                                "ti": tokens_in,
                                "to": tokens_out,
                                "t": now_ms(),
                            },
                        )
                    ).one()
                    await _touch(conn, conversation_id)
                    return _turn(row)
            except IntegrityError:
                continue  # another writer took the sequence number: take the next one
        raise RuntimeError(f"could not append a turn to conversation {conversation_id}")

    async def update_anchor(self, post_id: str, change: Callable[[Turn], tuple[list[Block], T]]) -> tuple[Turn, T]:
        """Rewrite the blocks of the assistant turn anchored on ``post_id`` under a row lock, so
        two replicas deciding at once serialise and the second sees the first's result.
        ``change`` may raise to abort (nothing is written)."""
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_TURN_COLUMNS} FROM llm_turns WHERE postid = :p AND role = 'assistant' "
                        "ORDER BY sequence DESC LIMIT 1 FOR UPDATE"
                    ),
                    {"p": post_id},
                )
            ).first()
            if row is None:
                raise FailedPrecondition("no tool calls are waiting for a decision on this post")
            turn = _turn(row)
            blocks, result = change(turn)
            await conn.execute(
                text("UPDATE llm_turns SET content = CAST(:content AS jsonb) WHERE id = :id"),
                {"content": _jsonb(blocks), "id": turn.id},
            )
            await _touch(conn, turn.conversation_id)
            return Turn(**{**turn.__dict__, "content": blocks}), result

    async def update_turn(self, turn_id: str, content: Sequence[Block]) -> None:
        """Replaces a turn's blocks."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE llm_turns SET content = CAST(:content AS jsonb) WHERE id = :id"),
                {"content": _jsonb(content), "id": turn_id},
            )

    async def delete_turns_after(self, conversation_id: str, sequence: int) -> None:
        """Drop every turn after ``sequence`` (a regenerate replaces the answer)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM llm_turns WHERE conversationid = :c AND sequence > :s"),
                {"c": conversation_id, "s": sequence},
            )

    # ---- streams -------------------------------------------------------------------------------

    async def start_stream(
        self,
        *,
        response_post_id: str,
        conversation_id: str,
        user_id: str,
        request_post_id: str,
        kind: Operation,
        params: dict[str, Any],
        no_regen: bool = False,
        first: bool = False,
    ) -> bool:
        """Mark the post as being written by this replica (clearing an old stop flag). ``first``:
        only as the first answer to ``request_post_id`` (one conversation stream per request
        post); False when a turn already answers that post or writes into this one."""
        conflict = (
            "ON CONFLICT DO NOTHING"
            if first
            else "ON CONFLICT (responsepostid) DO UPDATE SET state = 'running', stoprequested = false, "
            "runner = :run, updatedat = :t"
        )
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text(
                    "INSERT INTO llm_streams (responsepostid, conversationid, userid, requestpostid, kind, params, "
                    "noregen, state, stoprequested, runner, updatedat) VALUES (:r, :c, :u, :q, :k, "
                    f"CAST(:params AS jsonb), :nr, 'running', false, :run, :t) {conflict}"
                ),
                {
                    "r": response_post_id,
                    "c": conversation_id,
                    "u": user_id,
                    "q": request_post_id,
                    "k": str(kind),
                    "params": _jsonb(params),
                    "nr": no_regen,
                    "run": self.runner,
                    "t": now_ms(),
                },
            )
            return result.rowcount == 1

    async def discard_stream(self, response_post_id: str) -> None:
        """Forget a stream whose turn failed to start, so that the post can be answered again."""
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM llm_streams WHERE responsepostid = :r"), {"r": response_post_id})

    async def response_posts(self, conversation_id: str) -> list[str]:
        """The bot posts answering the conversation's posts."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT responsepostid FROM llm_streams WHERE conversationid = :c"), {"c": conversation_id}
            )
            return [r.responsepostid for r in rows]

    async def get_stream(self, response_post_id: str) -> StreamRecord | None:
        """The stream writing into a bot post; None if none ever did."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_STREAM_COLUMNS} FROM llm_streams WHERE responsepostid = :r"),
                    {"r": response_post_id},
                )
            ).first()
            return None if row is None else _stream(row)

    async def set_stream_state(self, response_post_id: str, state: str) -> None:
        """Records the stream's state."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE llm_streams SET state = :s, updatedat = :t WHERE responsepostid = :r"),
                {"s": state, "t": now_ms(), "r": response_post_id},
            )

    async def request_stop(self, response_post_id: str) -> None:
        """Sets the stream's stop flag, for the replica running it to see."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text("UPDATE llm_streams SET stoprequested = true, updatedat = :t WHERE responsepostid = :r"),
                {"t": now_ms(), "r": response_post_id},
            )

    async def stops_requested(self, response_post_ids: Sequence[str]) -> set[str]:
        """Which of these posts someone asked to stop (on any replica)."""
        if not response_post_ids:
            return set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT responsepostid FROM llm_streams WHERE responsepostid = ANY(:ids) AND stoprequested"),
                {"ids": list(response_post_ids)},
            )
            return {r.responsepostid for r in rows}


async def _touch(conn: AsyncConnection, conversation_id: str) -> None:
    await conn.execute(
        text("UPDATE llm_conversations SET updatedat = :t WHERE id = :id"), {"t": now_ms(), "id": conversation_id}
    )
