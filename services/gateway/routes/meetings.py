"""POST /post/{postid}/summarize_transcription (a Calls or Zoom transcript post) and
/post/{postid}/transcribe/file/{fileid} (a file of the post): meeting summaries streamed into a DM.

The summary itself is ``Conversations.Summarize`` with the ``summarize_transcript`` preset, naming
the transcript's post and file; the gateway checks the plugin's guards and that the file is a
readable, non-empty transcript before a turn starts. A recording is first transcribed with
``LLM.Transcribe`` on the service of the agent the plugin config's ``transcriptBackend`` names;
the WebVTT comes back attached to the summary post, which is then summarised from it.
"""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.errors import FailedPrecondition, InvalidInput, NotFound
from services.common.grpc_client import unary
from services.common.licensing import Feature
from services.common.mattermost import Post
from services.common.mattermost.models import FileInfo
from services.common.webvtt import is_transcript_file, parse_vtt
from services.gateway.deps import DEPS
from services.gateway.meetings.recordings import (
    MAX_RECORDING_BYTES,
    TRANSCRIPT_FILENAME,
    TRANSCRIPT_MIME_TYPE,
    is_recording_file,
)
from services.gateway.middleware import require_empty_body
from services.gateway.replies import FileUpload
from services.gateway.routes.guards import bot_for, plugin_config, readable_post, require_license
from services.gateway.routes.post_actions import PROP_RECORDING_FILE, PROP_TRANSCRIPT_POST
from services.gateway.routes.summaries import SummaryRequest, summarize_into_dm

routes = web.RouteTableDef()

# The bots whose posts carry meeting transcripts (the plugin accepts no others).
TRANSCRIPT_BOTS = ("calls", "zoom")
PRESET = "summarize_transcript"
# Transcripts larger than this are not read into the gateway to check them.
MAX_TRANSCRIPT_BYTES = 5 * 1024 * 1024
# Transcribing an hour of audio upstream takes minutes, far beyond the default RPC deadline.
TRANSCRIBE_TIMEOUT_SECONDS = 600.0


async def _check_transcript(request: web.Request, info: FileInfo) -> None:
    """InvalidInput unless the file holds a non-empty text or WebVTT transcript."""
    content = await request.app[DEPS].mattermost.get_file(info.id, max_bytes=MAX_TRANSCRIPT_BYTES)
    if not parse_vtt(content.decode("utf-8", errors="replace")):
        raise InvalidInput("the transcript is empty")


async def _summarize(request: web.Request, post: Post, info: FileInfo) -> web.Response:
    agent = await bot_for(request)
    await require_license(request, Feature.TRANSCRIPTS)
    await _check_transcript(request, info)
    summary = SummaryRequest(
        channel_id=post.channel_id,
        preset_prompt=PRESET,
        transcript_file_id=info.id,
        transcript_post_id=post.id,
        props={PROP_TRANSCRIPT_POST: post.id, PROP_RECORDING_FILE: info.id},
    )
    return await summarize_into_dm(request, agent, summary)


@routes.post("/post/{postid}/summarize_transcription")
async def summarize_transcription(request: web.Request) -> web.Response:
    """Summarise a Calls or Zoom transcript post into a DM with the agent."""
    await require_empty_body(request)
    post = await readable_post(request)
    deps = request.app[DEPS]
    author = await deps.mattermost.get_user(post.user_id)
    if author.username not in TRANSCRIPT_BOTS:
        raise InvalidInput("only transcripts posted by the calls or zoom bots can be summarized")
    infos = [await deps.mattermost.get_file_info(file_id) for file_id in post.file_ids]
    transcript = next((i for i in infos if is_transcript_file(i)), None)
    if transcript is None:
        raise InvalidInput("the post has no transcript file")
    return await _summarize(request, post, transcript)


@routes.post("/post/{postid}/transcribe/file/{fileid}")
async def transcribe_file(request: web.Request) -> web.Response:
    """Summarise a transcript file of the post, or a recording transcribed first, into a DM."""
    await require_empty_body(request)
    post = await readable_post(request)
    file_id = request.match_info["fileid"]
    if file_id not in post.file_ids:
        raise InvalidInput("the file is not attached to the post")
    info = await request.app[DEPS].mattermost.get_file_info(file_id)
    if is_transcript_file(info):
        return await _summarize(request, post, info)
    if not is_recording_file(info):
        raise InvalidInput(
            "the file is neither a text or VTT transcript nor a recording the transcription service accepts "
            "(mp3, mp4, m4a, wav, webm, ogg or flac)"
        )
    return await _transcribe_and_summarize(request, post, info)


async def _transcribe_and_summarize(request: web.Request, post: Post, info: FileInfo) -> web.Response:
    agent = await bot_for(request)
    await require_license(request, Feature.TRANSCRIPTS)
    if info.size > MAX_RECORDING_BYTES:
        raise InvalidInput(f"the recording is larger than {MAX_RECORDING_BYTES // (1024 * 1024)} MB")
    deps = request.app[DEPS]
    service_id = await _transcription_service(request)
    audio = await deps.mattermost.get_file(info.id, max_bytes=MAX_RECORDING_BYTES)
    transcript = await unary(
        deps.backends.llm.Transcribe,
        llm_pb2.TranscribeRequest(service_id=service_id, audio=audio, filename=info.name, mime_type=info.mime_type),
        timeout=TRANSCRIBE_TIMEOUT_SECONDS,
    )
    if not parse_vtt(transcript.vtt):
        raise InvalidInput("no speech was found in the recording")
    summary = SummaryRequest(
        channel_id=post.channel_id,
        preset_prompt=PRESET,
        transcript_post_id=post.id,
        props={PROP_TRANSCRIPT_POST: post.id, PROP_RECORDING_FILE: info.id},
        transcript_upload=FileUpload(TRANSCRIPT_FILENAME, transcript.vtt.encode(), TRANSCRIPT_MIME_TYPE),
    )
    return await summarize_into_dm(request, agent, summary)


async def _transcription_service(request: web.Request) -> str:
    """The service of the agent named by the plugin config's ``transcriptBackend``."""
    name = (await plugin_config(request)).config.transcript_backend
    if not name:
        raise FailedPrecondition(
            "no transcription backend is configured: set transcriptBackend to an agent whose service is "
            "OpenAI, OpenAI-compatible or Azure OpenAI"
        )
    deps = request.app[DEPS]
    try:
        reply = await unary(deps.backends.registry.GetAgent, registry_pb2.GetAgentRequest(username=name))
    except NotFound:
        raise FailedPrecondition(f"the transcription backend {name!r} is not an agent") from None
    return reply.agent.service_id
