"""Meeting recordings the transcription service takes as they are.

There is no ffmpeg here to convert or downsample (the plugin bundles one): a recording is sent
upstream unchanged, so only the formats Whisper-style ``/audio/transcriptions`` APIs accept
directly count, and its size is capped below both their upload limit (25 MB) and the cluster's
gRPC message limit (16 MiB) that carries it to the llm service.
"""

from __future__ import annotations

from services.common.mattermost.models import FileInfo

# OpenAI's documented input formats for /audio/transcriptions.
AUDIO_EXTENSIONS = frozenset({"flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm"})
AUDIO_TYPES = frozenset(
    {
        "audio/flac",
        "audio/m4a",
        "audio/mp4",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "audio/webm",
        "audio/x-m4a",
        "audio/x-wav",
        "video/mp4",
        "video/webm",
    }
)
# The gRPC message limit less room for the request's other fields.
MAX_RECORDING_BYTES = 15 * 1024 * 1024
# What the transcript uploaded next to the meeting summary is called.
TRANSCRIPT_FILENAME = "transcript.vtt"
TRANSCRIPT_MIME_TYPE = "text/vtt"


def is_recording_file(info: FileInfo) -> bool:
    """An audio or video file in a format the transcription service accepts without conversion."""
    mime = info.mime_type.split(";")[0].strip().lower()
    return mime in AUDIO_TYPES or info.extension.lower() in AUDIO_EXTENSIONS
