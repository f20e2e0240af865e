"""POST /post/{postid}/summarize_transcription (a Calls or Zoom transcript post) and
/post/{postid}/transcribe/file/{fileid} (a file of the post): meeting summaries streamed into a DM.

The summary itself is ``Conversations.Summarize`` with the ``summarize_transcript`` preset, naming
the transcript's post and file; the gateway checks the plugin's guards and that the file is a
readable, non-empty transcript before a turn starts.
"""

from __future__ import annotations

from aiohttp import web

from services.common.errors import FailedPrecondition, InvalidInput
from services.common.licensing import Feature
from services.common.mattermost import Post
from services.common.mattermost.models import FileInfo
from services.gateway.deps import DEPS
from services.gateway.meetings.vtt import is_transcript_file, parse_vtt
from services.gateway.middleware import require_empty_body
from services.gateway.routes.guards import bot_for, readable_post, require_license
from services.gateway.routes.post_actions import PROP_RECORDING_FILE, PROP_TRANSCRIPT_POST
from services.gateway.routes.summaries import SummaryRequest, summarize_into_dm

routes = web.RouteTableDef()

# The bots whose posts carry meeting transcripts (the plugin accepts no others).
TRANSCRIPT_BOTS = ("calls", "zoom")
PRESET = "summarize_transcript"
# Transcripts larger than this are not read into the gateway to check them.
MAX_TRANSCRIPT_BYTES = 5 * 1024 * 1024


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
    await require_empty_body(request)
    post = await readable_post(request)
    file_id = request.match_info["fileid"]
    if file_id not in post.file_ids:
        raise InvalidInput("the file is not attached to the post")
    info = await request.app[DEPS].mattermost.get_file_info(file_id)
    if not is_transcript_file(info):
        # Recordings need ffmpeg, LLM.Transcribe and a VTT upload back to Mattermost: not here yet.
        raise FailedPrecondition("transcribing recordings is not available yet; attach a VTT or text transcript")
    return await _summarize(request, post, info)
