from __future__ import annotations

import base64

import pytest

from services.common.settings import SettingsError
from services.mcp.embedded.sessions import SessionClaims, SessionSealer, decode_key
from services.mcp.settings import load

KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sealed_id_opens_on_another_sealer_with_the_same_key() -> None:
    clock = Clock()
    session_id = SessionSealer(KEY, 3600, clock=clock).seal("user1", "2025-11-25")
    assert SessionSealer(KEY, 3600, clock=clock).open(session_id) == SessionClaims("user1", "2025-11-25", 1_000_000)
    assert session_id.isascii() and session_id.isprintable() and "user1" not in session_id


def test_an_id_sealed_under_another_key_or_altered_opens_to_nothing() -> None:
    session_id = SessionSealer(KEY, 3600).seal("user1", "2025-11-25")
    assert SessionSealer(b"x" * 32, 3600).open(session_id) is None
    flipped = session_id[:10] + ("A" if session_id[10] != "A" else "B") + session_id[11:]
    for forged in (flipped, session_id[:-2], "", "not base64 at all!", "AAAA"):
        assert SessionSealer(KEY, 3600).open(forged) is None, forged


def test_an_id_older_than_the_max_age_opens_to_nothing() -> None:
    clock = Clock()
    sealer = SessionSealer(KEY, 60, clock=clock)
    session_id = sealer.seal("user1", "2025-11-25")
    clock.now += 60
    assert sealer.open(session_id) is not None
    clock.now += 1
    assert sealer.open(session_id) is None


def test_the_session_key_setting_must_decode_to_32_bytes() -> None:
    good = base64.urlsafe_b64encode(KEY).decode().rstrip("=")
    assert decode_key(good) == KEY
    assert load({"AGENTS_MCP_SERVER_SESSION_KEY": good}).server_session_key == good
    with pytest.raises(SettingsError, match="AGENTS_MCP_SERVER_SESSION_KEY"):
        load({"AGENTS_MCP_SERVER_SESSION_KEY": base64.urlsafe_b64encode(b"short").decode()})
