"""Custom prompts (LLM_CustomPrompts) and per-user pins (LLM_CustomPromptPins)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import InvalidInput, NotFound
from services.common.identity import Identity
from services.index.registry.config_store import new_id, now_ms

MAX_NAME = 64  # runes, as the plugin counts them
MAX_DESCRIPTION = 1024
MAX_TEMPLATE = 32768

_COLUMNS = "id, creatorid, name, description, template, isshared, createdat, updatedat"


@dataclass(frozen=True)
class CustomPrompt:
    """One saved prompt template; shared ones are visible to every user."""

    id: str
    creator_id: str
    name: str
    description: str
    template: str
    is_shared: bool
    created_at: int
    updated_at: int


def validate_prompt(name: str, description: str, template: str) -> None:
    """Raise InvalidInput naming the first missing or oversized field."""
    if not name.strip():
        raise InvalidInput("name is required", field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"name is longer than {MAX_NAME} characters", field="name")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description is longer than {MAX_DESCRIPTION} characters", field="description")
    if not template.strip():
        raise InvalidInput("template is required", field="template")
    if len(template) > MAX_TEMPLATE:
        raise InvalidInput(f"template is longer than {MAX_TEMPLATE} characters", field="template")


def _prompt(row: Row[Any]) -> CustomPrompt:
    m = row._mapping
    return CustomPrompt(
        m["id"],
        m["creatorid"],
        m["name"],
        m["description"],
        m["template"],
        m["isshared"],
        m["createdat"],
        m["updatedat"],
    )


def _require_user(caller: Identity) -> str:
    if not caller.user_id:
        raise InvalidInput("custom prompts belong to a user; the call carries none", field="user_id")
    return caller.user_id


class PromptLibrary:
    """Each user's custom prompts and pins; every call acts for the calling user."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def visible(self, caller: Identity) -> list[CustomPrompt]:
        """The caller's prompts plus shared ones, newest first."""
        user = _require_user(caller)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM llm_customprompts WHERE deletedat = 0 AND (creatorid = :u OR isshared) "
                    "ORDER BY updatedat DESC, id"
                ),
                {"u": user},
            )
            return [_prompt(r) for r in rows]

    async def get(self, caller: Identity, prompt_id: str, *, owned: bool = False) -> CustomPrompt:
        """A prompt the caller owns or (unless ``owned``) that is shared; NotFound otherwise."""
        user = _require_user(caller)
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_COLUMNS} FROM llm_customprompts WHERE id = :id AND deletedat = 0"),
                    {"id": prompt_id},
                )
            ).first()
        prompt = _prompt(row) if row else None
        if prompt is None or (prompt.creator_id != user and (owned or not prompt.is_shared)):
            raise NotFound(f"custom prompt {prompt_id} not found")
        return prompt

    async def create(
        self, caller: Identity, name: str, description: str, template: str, is_shared: bool
    ) -> CustomPrompt:
        """A new prompt owned by the caller."""
        user = _require_user(caller)
        validate_prompt(name, description, template)
        now = now_ms()
        prompt = CustomPrompt(new_id(), user, name.strip(), description, template, is_shared, now, now)
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO llm_customprompts (id, creatorid, name, description, template, isshared, createdat, "
                    "updatedat, deletedat) VALUES (:id, :c, :n, :d, :t, :s, :ca, :ua, 0)"
                ),
                {
                    "id": prompt.id,
                    "c": user,
                    "n": prompt.name,
                    "d": description,
                    "t": template,
                    "s": is_shared,
                    "ca": now,
                    "ua": now,
                },
            )
        return prompt

    async def update(
        self, caller: Identity, prompt_id: str, name: str, description: str, template: str, is_shared: bool
    ) -> CustomPrompt:
        """Replace a prompt the caller created; NotFound for any other."""
        user = _require_user(caller)
        validate_prompt(name, description, template)
        now = now_ms()
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "UPDATE llm_customprompts SET name = :n, description = :d, template = :t, isshared = :s, "
                        f"updatedat = :ua WHERE id = :id AND creatorid = :u AND deletedat = 0 RETURNING {_COLUMNS}"
                    ),
                    {
                        "n": name.strip(),
                        "d": description,
                        "t": template,
                        "s": is_shared,
                        "ua": now,
                        "id": prompt_id,
                        "u": user,
                    },
                )
            ).first()
        if row is None:
            raise NotFound(f"custom prompt {prompt_id} not found")
        return _prompt(row)

    async def delete(self, caller: Identity, prompt_id: str) -> None:
        """Soft-delete a prompt the caller created; NotFound for any other."""
        user = _require_user(caller)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                text("UPDATE llm_customprompts SET deletedat = :t WHERE id = :id AND creatorid = :u AND deletedat = 0"),
                {"t": now_ms(), "id": prompt_id, "u": user},
            )
        if result.rowcount == 0:
            raise NotFound(f"custom prompt {prompt_id} not found")

    async def pinned(self, caller: Identity) -> list[str]:
        """Ids of pinned prompts the caller can still see."""
        user = _require_user(caller)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT p.promptid FROM llm_custompromptpins p JOIN llm_customprompts c ON c.id = p.promptid "
                    "WHERE p.userid = :u AND c.deletedat = 0 AND (c.creatorid = :u OR c.isshared) ORDER BY p.promptid"
                ),
                {"u": user},
            )
            return [r.promptid for r in rows]

    async def set_pin(self, caller: Identity, prompt_id: str, pinned: bool) -> None:
        """Pin or unpin a prompt for the caller; pinning needs a prompt the caller can see."""
        user = _require_user(caller)
        if not prompt_id:
            raise InvalidInput("prompt_id is required", field="prompt_id")
        if pinned:
            await self.get(caller, prompt_id)
            statement = "INSERT INTO llm_custompromptpins (userid, promptid) VALUES (:u, :p) ON CONFLICT DO NOTHING"
        else:
            statement = "DELETE FROM llm_custompromptpins WHERE userid = :u AND promptid = :p"
        async with self.engine.begin() as conn:
            await conn.execute(text(statement), {"u": user, "p": prompt_id})
