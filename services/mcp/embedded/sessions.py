"""Sealed MCP session ids: what a session needs travels in its ``Mcp-Session-Id``.

The id is the session's claims (its user, the protocol version the client asked for, when it
was issued) sealed with AES-256-GCM under a key every replica shares. Any replica opens it, so a
client's session keeps working when its next request lands on another replica, or after the
replica that issued it is gone, with no shared store. A tampered, foreign or expired id opens to
nothing, and the server answers it as the spec says for an unknown session: 404.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
_NONCE_BYTES = 12
# Ties a sealed id to its use: the same key sealing anything else cannot produce a valid session.
_ASSOCIATED_DATA = b"agents.mcp.session.v1"


@dataclass(frozen=True)
class SessionClaims:
    """What a session carries: its owner, the protocol version it asked for, and its issue time."""

    user_id: str
    protocol_version: str
    issued_at: int


def decode_key(text: str) -> bytes:
    """The 32-byte key from its URL-safe base64 form; ValueError naming what is wrong."""
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be URL-safe base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"must decode to {KEY_BYTES} bytes, not {len(key)}")
    return key


class SessionSealer:
    """Seals and opens session ids with one key; ids older than ``max_age`` seconds open to nothing."""

    def __init__(self, key: bytes, max_age: float, *, clock: Callable[[], float] = time.time) -> None:
        self._aead = AESGCM(key)
        self._max_age = max_age
        self._clock = clock

    def seal(self, user_id: str, protocol_version: str) -> str:
        """A new session id for ``user_id``."""
        claims = {"u": user_id, "v": protocol_version, "t": int(self._clock())}
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(claims, separators=(",", ":")).encode(), _ASSOCIATED_DATA)
        # Unpadded URL-safe base64: visible ASCII, as the spec asks of a session id.
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def open(self, session_id: str) -> SessionClaims | None:
        """The claims of a session id this key sealed and that has not expired, else None."""
        try:
            raw = base64.urlsafe_b64decode(session_id + "=" * (-len(session_id) % 4))
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _ASSOCIATED_DATA)
            data = json.loads(plain)
            claims = SessionClaims(str(data["u"]), str(data["v"]), int(data["t"]))
        except (binascii.Error, ValueError, InvalidTag, KeyError, TypeError):
            return None
        if self._clock() - claims.issued_at > self._max_age:
            return None
        return claims
