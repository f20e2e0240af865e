"""A fake Mattermost server (REST v4 + WebSocket) for tests; see ``server.FakeMattermost``."""

from __future__ import annotations

from tests.fakes.mattermost.server import FakeMattermost, RecordedRequest
from tests.fakes.mattermost.state import FakeChannel, FakeTeam, FakeUser

__all__ = ["FakeChannel", "FakeMattermost", "FakeTeam", "FakeUser", "RecordedRequest"]
