"""Speech to text over the Whisper-style ``/audio/transcriptions`` API.

Only ``openai``, ``openaicompatible`` and ``azure`` services speak it; every other type answers
FAILED_PRECONDITION. The upstream is asked for WebVTT (what the plugin stores for meetings);
the plain text is the cues' text joined, so callers that only want words need no VTT parser.
Azure serves it per deployment: the service's default model names the Whisper deployment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from services.common.errors import FailedPrecondition, InvalidInput
from services.llm.overhead import provider_wait
from services.llm.providers.azure import _azure_headers, _endpoint
from services.llm.providers.base import ServiceSettings, ServiceType
from services.llm.providers.errors import (
    MAX_ERROR_BODY_BYTES,
    provider_error_from_exception,
    provider_error_from_response,
)
from services.llm.providers.http_stream import read_bounded

logger = logging.getLogger(__name__)

WHISPER_MODEL = "whisper-1"
AZURE_API_VERSION = "2024-10-21"
# OpenAI's documented limit for one transcription upload.
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_VTT_BYTES = 8 * 1024 * 1024
TRANSCRIBING_TYPES = frozenset({ServiceType.OPENAI, ServiceType.OPENAI_COMPATIBLE, ServiceType.AZURE})


@dataclass(frozen=True)
class Transcript:
    """A transcription as WebVTT (cues with timings) and as plain text."""

    vtt: str
    text: str


def _target(settings: ServiceSettings) -> tuple[str, dict[str, str], str]:
    """(url, auth headers, provider name) for the service's transcription endpoint."""
    if settings.type == ServiceType.AZURE:
        deployment = settings.default_model or WHISPER_MODEL
        url = (
            f"{_endpoint(settings)}/openai/deployments/{quote(deployment, safe='')}"
            f"/audio/transcriptions?api-version={AZURE_API_VERSION}"
        )
        return url, _azure_headers(settings), "Azure OpenAI"
    base = (settings.api_url or "https://api.openai.com/v1").rstrip("/")
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    if settings.org_id:
        headers["OpenAI-Organization"] = settings.org_id
    name = "OpenAI" if settings.type == ServiceType.OPENAI else "the OpenAI-compatible service"
    return f"{base}/audio/transcriptions", headers, name


def text_of_vtt(vtt: str) -> str:
    """The spoken text of a WebVTT document: cue payloads joined by spaces."""
    words: list[str] = []
    for block in vtt.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines or lines[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is not None:
            words.extend(line.strip() for line in lines[timing + 1 :])
    return " ".join(words)


async def transcribe(
    settings: ServiceSettings,
    audio: bytes,
    *,
    session: aiohttp.ClientSession,
    filename: str = "audio",
    mime_type: str = "application/octet-stream",
    language: str = "",
) -> Transcript:
    """Transcribe ``audio`` with the service; FAILED_PRECONDITION for providers without the API."""
    if settings.type not in TRANSCRIBING_TYPES:
        raise FailedPrecondition(
            f"{settings.type} services cannot transcribe audio; choose an OpenAI, OpenAI-compatible "
            "or Azure service for transcription"
        )
    if not audio:
        raise InvalidInput("the audio file is empty", field="audio")
    if len(audio) > MAX_AUDIO_BYTES:
        raise InvalidInput(f"the audio file is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB", field="audio")
    url, headers, name = _target(settings)
    form = aiohttp.FormData()
    form.add_field("file", audio, filename=filename or "audio", content_type=mime_type or "application/octet-stream")
    form.add_field("model", WHISPER_MODEL if settings.type != ServiceType.AZURE else settings.default_model or "")
    form.add_field("response_format", "vtt")
    if language:
        form.add_field("language", language)
    try:
        with provider_wait():
            async with session.post(url, data=form, headers=headers) as resp:
                body = await read_bounded(resp, MAX_VTT_BYTES if resp.status < 300 else MAX_ERROR_BODY_BYTES)
                if resp.status >= 300:
                    raise provider_error_from_response(
                        resp.status, resp.headers, body, name, secrets=(settings.api_key,)
                    )
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        logger.warning("transcription request to %s failed: %s", name, type(exc).__name__)
        raise provider_error_from_exception(exc, name) from None
    vtt = body.decode("utf-8", errors="replace")
    return Transcript(vtt=vtt, text=text_of_vtt(vtt))
