"""WebVTT transcripts (what Calls and Zoom attach, and what Whisper-style transcription returns)
read into ``speaker: text`` lines, so a route can tell a usable transcript from an empty file."""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.mattermost.models import FileInfo

_TIMING = re.compile(r"^\s*(\d{1,2}:)?\d{2}:\d{2}[.,]\d{3}\s+-->\s+(\d{1,2}:)?\d{2}:\d{2}[.,]\d{3}")
# <v Speaker Name>text</v>: the voice tag Calls writes.
_VOICE = re.compile(r"^<v(?:\.[\w.-]+)?\s+([^>]+)>(.*?)(?:</v>)?$")
_TAG = re.compile(r"<[^>]+>")
TEXT_TYPES = ("text/vtt", "text/plain")


@dataclass(frozen=True)
class Cue:
    speaker: str
    text: str


def parse_vtt(raw: str) -> list[Cue]:
    """The cues of a WebVTT document (or of plain text: one cue per non-empty line)."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        return [Cue("", line.strip()) for line in lines if line.strip()]
    cues: list[Cue] = []
    in_cue = False
    for line in lines[1:]:
        if _TIMING.match(line):
            in_cue = True
            continue
        if not line.strip():
            in_cue = False
            continue
        if not in_cue:
            continue  # cue identifiers, NOTE and STYLE blocks
        voice = _VOICE.match(line.strip())
        speaker, text = (voice.group(1).strip(), voice.group(2)) if voice else ("", line)
        text = _TAG.sub("", text).strip()
        if not text:
            continue
        if cues and cues[-1].speaker == speaker and in_cue and not voice:
            cues[-1] = Cue(speaker, f"{cues[-1].text} {text}")
        else:
            cues.append(Cue(speaker, text))
    return cues


def transcript_text(cues: list[Cue]) -> str:
    """``speaker: text`` per cue (the speaker omitted when unknown)."""
    return "\n".join(f"{c.speaker}: {c.text}" if c.speaker else c.text for c in cues)


def is_transcript_file(info: FileInfo) -> bool:
    """A file already holding text (a VTT transcript or a plain-text one), not a recording."""
    mime = info.mime_type.split(";")[0].strip().lower()
    return mime in TEXT_TYPES or info.extension.lower() in ("vtt", "txt")
