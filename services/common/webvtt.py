"""Meeting transcripts read into ``speaker: text`` cues: WebVTT (what Calls and Zoom attach, and
what Whisper-style transcription returns), Zoom's chat/caption text export, or plain text.

Shared by the gateway (is this file a usable transcript?) and the llm service (what goes into the
meeting summary prompt), so both read a transcript the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.mattermost.models import FileInfo

_TIMING = re.compile(r"^\s*(\d{1,2}:)?\d{2}:\d{2}[.,]\d{3}\s+-->\s+(\d{1,2}:)?\d{2}:\d{2}[.,]\d{3}")
# <v Speaker Name>text</v>: the voice tag Calls writes.
_VOICE = re.compile(r"^<v(?:\.[\w.-]+)?\s+([^>]+)>(.*?)(?:</v>)?$")
_TAG = re.compile(r"<[^>]+>")
# Zoom's saved chat and caption text: "10:02:13 From Jane Doe to Everyone: text" (older exports
# "10:02:13 From Jane Doe : text"), or the tab-separated "00:01:02\tJane Doe:\ttext".
_ZOOM_FROM = re.compile(r"^\d{1,2}:\d{2}:\d{2}\s+From\s+(.+?)(?:\s+to\s+[^:]+?)?\s*:\s*(.*)$")
_ZOOM_TAB = re.compile(r"^\d{1,2}:\d{2}:\d{2}\t([^\t:]+):\t?(.*)$")
TEXT_TYPES = ("text/vtt", "text/plain")
TEXT_EXTENSIONS = ("vtt", "txt")


@dataclass(frozen=True)
class Cue:
    """One cue of a transcript: who spoke (empty when unknown) and what they said."""

    speaker: str
    text: str


def parse_vtt(raw: str) -> list[Cue]:
    """The cues of a WebVTT document, of a Zoom chat export, or of plain text (a cue a line)."""
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or not lines[0].lstrip("\ufeff").startswith("WEBVTT"):
        return [_plain_cue(line.strip()) for line in lines if line.strip()]
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


def _plain_cue(line: str) -> Cue:
    zoom = _ZOOM_FROM.match(line) or _ZOOM_TAB.match(line)
    if zoom:
        return Cue(zoom.group(1).strip(), zoom.group(2).strip())
    return Cue("", line)


def transcript_text(cues: list[Cue]) -> str:
    """``speaker: text`` per cue (the speaker omitted when unknown)."""
    return "\n".join(f"{c.speaker}: {c.text}" if c.speaker else c.text for c in cues)


def is_transcript_file(info: FileInfo) -> bool:
    """A file already holding text (a VTT transcript or a plain-text one), not a recording."""
    mime = info.mime_type.split(";")[0].strip().lower()
    return mime in TEXT_TYPES or info.extension.lower() in TEXT_EXTENSIONS
