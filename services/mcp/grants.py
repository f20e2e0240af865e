"""Users' OAuth grants for remote MCP servers and their pending authorizations, in PostgreSQL.

Tokens, PKCE verifiers and client secrets are sealed with AES-GCM; each value's associated data
names its row and column, so a sealed value copied into another user's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import FailedPrecondition, InvalidInput

NONCE_BYTES = 12


def _now_ms() -> int:
    return int(time.time() * 1000)


class TokenCipher:
    """AES-256-GCM over the key from ``AGENTS_MCP_TOKEN_KEY`` (urlsafe base64 of 32 bytes)."""

    def __init__(self, key: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise InvalidInput("AGENTS_MCP_TOKEN_KEY must be 32 bytes in urlsafe base64", field="AGENTS_MCP_TOKEN_KEY")
        self._aead = AESGCM(raw)

    def seal(self, value: str, context: str) -> bytes:
        """``value`` encrypted, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, value.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        """The value ``seal`` sealed with the same context; FailedPrecondition if it does not open."""
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag:
            raise FailedPrecondition("a stored MCP OAuth grant could not be decrypted (was the key changed?)") from None


def state_hash(state: str) -> str:
    """How a state is stored and looked up."""
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """The OAuth client used with one authorization server, and where its tokens come from."""

    client_id: str
    client_secret: str = field(default="", repr=False)
    token_endpoint: str = ""
    revocation_endpoint: str = ""


@dataclass(frozen=True)
class Pending:
    """An authorization started by a user and not yet completed."""

    user_id: str
    server_name: str
    code_verifier: str = field(repr=False)
    redirect_uri: str
    client: Client
    expires_at_ms: int


@dataclass(frozen=True)
class Grant:
    """A user's tokens for one server; ``expires_at`` in epoch seconds (None: the server gave none)."""

    user_id: str
    server_name: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: float | None
    client: Client


class GrantStore:
    """``mcp_oauth_grants`` and ``mcp_oauth_states``."""

    def __init__(self, engine: AsyncEngine, cipher: TokenCipher | None) -> None:
        self._engine = engine
        self._cipher = cipher

    @property
    def cipher(self) -> TokenCipher:
        """The cipher; FailedPrecondition when no key is configured."""
        if self._cipher is None:
            raise FailedPrecondition("connecting to MCP servers with OAuth needs AGENTS_MCP_TOKEN_KEY set")
        return self._cipher

    def _seal(self, value: str, *context: str) -> bytes | None:
        return self.cipher.seal(value, "/".join(context)) if value else None

    def _open(self, sealed: bytes | None, *context: str) -> str:
        return self.cipher.open(bytes(sealed), "/".join(context)) if sealed else ""

    async def add_pending(self, state: str, pending: Pending) -> None:
        """Record a started authorization under ``state``; expired ones are swept at the same time."""
        digest = state_hash(state)
        async with self._engine.begin() as conn:
            await conn.execute(text("DELETE FROM mcp_oauth_states WHERE expires_at < :now"), {"now": _now_ms()})
            await conn.execute(
                text(
                    """
                    INSERT INTO mcp_oauth_states (state_hash, user_id, server_name, code_verifier, redirect_uri,
                        token_endpoint, revocation_endpoint, client_id, client_secret, expires_at)
                    VALUES (:state, :user, :server, :verifier, :redirect, :token, :revoke, :client, :secret, :exp)
                    """
                ),
                {
                    "state": digest,
                    "user": pending.user_id,
                    "server": pending.server_name,
                    "verifier": self._seal(pending.code_verifier, "state", digest, "verifier"),
                    "redirect": pending.redirect_uri,
                    "token": pending.client.token_endpoint,
                    "revoke": pending.client.revocation_endpoint,
                    "client": pending.client.client_id,
                    "secret": self._seal(pending.client.client_secret, "state", digest, "secret"),
                    "exp": pending.expires_at_ms,
                },
            )

    async def take_pending(self, state: str, user_id: str) -> Pending | None:
        """The user's live authorization for ``state``, removed so that it is used once; None when
        there is none (unknown, expired, already used, or another user's, which stays untouched)."""
        digest = state_hash(state)
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    text("DELETE FROM mcp_oauth_states WHERE state_hash = :state AND user_id = :user RETURNING *"),
                    {"state": digest, "user": user_id},
                )
            ).first()
        if row is None or row.expires_at < _now_ms():
            return None
        client = Client(
            row.client_id,
            self._open(row.client_secret, "state", digest, "secret"),
            row.token_endpoint,
            row.revocation_endpoint,
        )
        verifier = self._open(row.code_verifier, "state", digest, "verifier")
        return Pending(row.user_id, row.server_name, verifier, row.redirect_uri, client, row.expires_at)

    async def get(self, user_id: str, server_name: str) -> Grant | None:
        """The user's grant for the server, or None."""
        async with self._engine.connect() as conn:
            return await self._read(conn, user_id, server_name, lock=False)

    @asynccontextmanager
    async def locked(self, user_id: str, server_name: str) -> AsyncIterator[tuple[Grant | None, AsyncConnection]]:
        """The grant with its row locked until the block ends: one refresh at a time across replicas."""
        async with self._engine.begin() as conn:
            yield await self._read(conn, user_id, server_name, lock=True), conn

    async def put(self, grant: Grant, conn: AsyncConnection | None = None) -> None:
        """Insert or replace the grant (inside ``conn``'s transaction when given)."""
        if conn is not None:
            await self._write(conn, grant)
            return
        async with self._engine.begin() as own:
            await self._write(own, grant)

    async def delete(self, user_id: str, server_name: str) -> Grant | None:
        """Remove the user's grant; returns what it was."""
        async with self.locked(user_id, server_name) as (grant, conn):
            await self.remove(conn, user_id, server_name)
        return grant

    async def remove(self, conn: AsyncConnection, user_id: str, server_name: str) -> None:
        """Remove the user's grant inside ``conn``'s transaction."""
        await conn.execute(
            text("DELETE FROM mcp_oauth_grants WHERE user_id = :user AND server_name = :server"),
            {"user": user_id, "server": server_name},
        )

    async def _read(self, conn: AsyncConnection, user_id: str, server_name: str, *, lock: bool) -> Grant | None:
        query = "SELECT * FROM mcp_oauth_grants WHERE user_id = :user AND server_name = :server"
        row = (
            await conn.execute(text(query + (" FOR UPDATE" if lock else "")), {"user": user_id, "server": server_name})
        ).first()
        if row is None:
            return None
        key = ("grant", user_id, server_name)
        return Grant(
            user_id,
            server_name,
            self._open(row.access_token, *key, "access"),
            self._open(row.refresh_token, *key, "refresh"),
            row.expires_at / 1000 if row.expires_at is not None else None,
            Client(
                row.client_id,
                self._open(row.client_secret, *key, "secret"),
                row.token_endpoint,
                row.revocation_endpoint,
            ),
        )

    async def _write(self, conn: AsyncConnection, grant: Grant) -> None:
        key = ("grant", grant.user_id, grant.server_name)
        await conn.execute(
            text(
                """
                INSERT INTO mcp_oauth_grants (user_id, server_name, access_token, refresh_token, expires_at,
                    token_endpoint, revocation_endpoint, client_id, client_secret, update_at)
                VALUES (:user, :server, :access, :refresh, :exp, :token, :revoke, :client, :secret, :now)
                ON CONFLICT (user_id, server_name) DO UPDATE SET access_token = EXCLUDED.access_token,
                    refresh_token = EXCLUDED.refresh_token, expires_at = EXCLUDED.expires_at,
                    token_endpoint = EXCLUDED.token_endpoint, revocation_endpoint = EXCLUDED.revocation_endpoint,
                    client_id = EXCLUDED.client_id, client_secret = EXCLUDED.client_secret,
                    update_at = EXCLUDED.update_at
                """
            ),
            {
                "user": grant.user_id,
                "server": grant.server_name,
                "access": self._seal(grant.access_token, *key, "access"),
                "refresh": self._seal(grant.refresh_token, *key, "refresh"),
                "exp": int(grant.expires_at * 1000) if grant.expires_at is not None else None,
                "token": grant.client.token_endpoint,
                "revoke": grant.client.revocation_endpoint,
                "client": grant.client.client_id,
                "secret": self._seal(grant.client.client_secret, *key, "secret"),
                "now": _now_ms(),
            },
        )
