"""Whisper-style transcription against ``FakeOpenAI``'s ``/audio/transcriptions``."""

from __future__ import annotations

from services.llm.providers.transcription import transcribe
from tests.unit.llm.provider_support import OPENAI, Upstream

UPSTREAM = OPENAI


async def test_a_transcript_longer_than_one_socket_read_comes_back_whole(upstream: Upstream) -> None:
    cue = "00:00:00.000 --> 00:00:01.000\nsomething said in the meeting\n\n"
    upstream.fake.transcript_vtt = "WEBVTT\n\n" + cue * 40_000  # ~2.5 MB: no single read delivers it
    transcript = await transcribe(upstream.settings, b"RIFF fake audio", session=upstream.session, filename="talk.wav")
    assert transcript.vtt == upstream.fake.transcript_vtt
