"""Reading meeting transcripts (WebVTT from Calls/Zoom, or plain text) and the agent's emoji."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidInput
from services.common.mattermost.models import FileInfo
from services.common.webvtt import Cue, is_transcript_file, parse_vtt, transcript_text
from services.gateway.routes.post_actions import emoji_from
from services.llm.conversations.meetings import split_transcript
from services.llm.tokens import ApproximateCounter

CALLS_VTT = """WEBVTT

1
00:00:00.000 --> 00:00:02.500
<v Alice Smith>Shall we ship on Friday?</v>

2
00:00:02.500 --> 00:00:04.000
<v Bob>Only if QA signs off.</v>

NOTE a comment that is not said

3
00:01:00.000 --> 00:01:02.000
continued without a voice tag
"""


def test_vtt_cues_keep_their_speakers_and_skip_ids_and_notes() -> None:
    assert parse_vtt(CALLS_VTT) == [
        Cue("Alice Smith", "Shall we ship on Friday?"),
        Cue("Bob", "Only if QA signs off."),
        Cue("", "continued without a voice tag"),
    ]


def test_transcript_text_names_speakers_when_known() -> None:
    text = transcript_text(parse_vtt(CALLS_VTT))
    assert text.splitlines() == [
        "Alice Smith: Shall we ship on Friday?",
        "Bob: Only if QA signs off.",
        "continued without a voice tag",
    ]


def test_plain_text_is_read_one_cue_per_line_and_an_empty_vtt_has_none() -> None:
    assert parse_vtt("first\n\nsecond\n") == [Cue("", "first"), Cue("", "second")]
    assert parse_vtt("WEBVTT\n\n") == []


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [("t.vtt", "text/vtt", True), ("t.txt", "text/plain; charset=utf-8", True), ("call.mp4", "video/mp4", False)],
)
def test_only_text_files_count_as_transcripts(name: str, mime: str, expected: bool) -> None:
    info = FileInfo(id="f", name=name, mime_type=mime, extension=name.rsplit(".", 1)[1])
    assert is_transcript_file(info) is expected


@pytest.mark.parametrize(("answer", "emoji"), [(":tada:", "tada"), ("thumbsup", "thumbsup"), (" `eyes` \n", "eyes")])
def test_the_emoji_is_read_from_the_models_answer(answer: str, emoji: str) -> None:
    assert emoji_from(answer) == emoji


def test_an_answer_without_an_emoji_name_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        emoji_from("I would pick a party popper!")


def test_zoom_chat_lines_keep_their_speakers() -> None:
    raw = "10:02:13 From Jane Doe to Everyone: Ship it\n00:01:02\tJohn Roe:\tAgreed\nplain line"
    assert parse_vtt(raw) == [Cue("Jane Doe", "Ship it"), Cue("John Roe", "Agreed"), Cue("", "plain line")]


def test_a_long_transcript_is_split_between_lines_within_the_budget() -> None:
    counter = ApproximateCounter(chars_per_token=1.0, margin=1.0)
    text = "\n".join(f"Speaker {i}: {'word ' * 5}" for i in range(10))
    parts = split_transcript(text, 70, counter)
    assert len(parts) > 1 and "\n".join(parts) == text
    assert all(sum(counter.count_text(line) + 1 for line in p.splitlines()) <= 70 for p in parts)
