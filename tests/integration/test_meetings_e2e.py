"""Meeting summaries end to end: a Calls transcript post, a VTT file and an audio recording go
through the gateway's meeting routes, the llm service reads the transcript from the fake
Mattermost (recordings are transcribed by the fake OpenAI's Whisper endpoint first) and streams
the "Meeting Summary" into the caller's DM with the agent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.contract.openapi import assert_matches_openapi
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

TRANSCRIBER = "scribe"
CALL_VTT = (
    b"WEBVTT\n\n1\n00:00:00.000 --> 00:00:03.000\n<v Ana>We ship the release on Friday.</v>\n\n"
    b"2\n00:00:03.000 --> 00:00:06.000\n<v Ben>I will update the changelog by Thursday.</v>\n"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    seed = Path(tmp_path_factory.mktemp("meetings")) / "config.json"
    seed.write_text(json.dumps({"transcriptBackend": TRANSCRIBER}))
    async with FakeOpenAI() as openai:
        env = {**FAST, "AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_INDEX_CONFIG_SEED_FILE": str(seed)}
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            await w.agent(TRANSCRIBER)
            yield w


def sent_with(world: World, text: str) -> dict:
    return next(r.body for r in reversed(world.openai.requests) if text in json.dumps(r.body))


async def test_a_calls_transcript_is_summarised_into_a_meeting_summary_dm_post(world: World) -> None:
    bot = await world.agent("minutes")
    ana, calls = world.mm.add_user("ana"), world.mm.add_user("calls", is_bot=True)
    town = world.town("standup-town", ana, calls)
    vtt = world.mm.add_file(calls, "transcript.vtt", CALL_VTT, "text/vtt")
    recording = world.mm.add_post(calls, town, "Call ended", file_ids=[vtt["id"]])
    world.openai.enqueue(FakeResponse.text("#### Summary\nShip Friday.\n#### Action items\n- Ben: changelog"))
    status, body, _ = await world.h.request(
        "POST", f"/post/{recording['id']}/summarize_transcription?botUsername=minutes", user=ana
    )
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/summarize_transcription", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"].startswith("#### Summary") and summary["user_id"] == bot.id
    assert summary["props"]["referenced_transcript_post_id"] == recording["id"]
    assert summary["props"].get("no_regen") != "true"
    asked = json.dumps(sent_with(world, "We ship the release on Friday.")["messages"])
    assert "Ana: We ship the release on Friday." in asked and "Ben: I will update the changelog" in asked
    assert "Action items" in asked  # the meeting summary instructions
    status, conversation = await world.h.get(f"/conversations/{summary['props']['conversation_id']}", user=ana)
    assert status == 200 and conversation["title"] == "Meeting Summary"
    # Meeting summaries may be regenerated (the plugin allows it), onto the same post.
    world.openai.enqueue(FakeResponse.text("Second summary."))
    status, _, _ = await world.h.request("POST", f"/post/{summary['id']}/regenerate", user=ana)
    assert status == 200
    await poll(lambda: world.mm.post(summary["id"])["message"] == "Second summary.", within=20)


async def test_transcribe_file_summarises_a_vtt_file_of_the_post(world: World) -> None:
    await world.agent("notetaker")
    cy = world.mm.add_user("cy")
    town = world.town("file-town", cy)
    vtt = world.mm.add_file(cy, "meeting.vtt", CALL_VTT, "text/vtt")
    post = world.mm.add_post(cy, town, "notes from today", file_ids=[vtt["id"]])
    world.openai.enqueue(FakeResponse.text("Friday release; changelog by Thursday."))
    status, body, _ = await world.h.request(
        "POST", f"/post/{post['id']}/transcribe/file/{vtt['id']}?botUsername=notetaker", user=cy
    )
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/transcribe/file/{fileid}", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"] == "Friday release; changelog by Thursday."
    assert "Ben: I will update the changelog by Thursday." in json.dumps(sent_with(world, "changelog by Thursday"))


async def test_an_audio_recording_is_transcribed_attached_as_vtt_and_summarised(world: World) -> None:
    bot = await world.agent("recorder")
    dee = world.mm.add_user("dee")
    town = world.town("audio-town", dee)
    audio = world.mm.add_file(dee, "standup.m4a", b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 256, "audio/mp4")
    post = world.mm.add_post(dee, town, "recording", file_ids=[audio["id"]])
    world.openai.transcript_vtt = CALL_VTT.decode()
    world.openai.enqueue(FakeResponse.text("Summary of the recording."))
    status, body, _ = await world.h.request(
        "POST", f"/post/{post['id']}/transcribe/file/{audio['id']}?botUsername=recorder", user=dee
    )
    assert status == 200, body
    summary = await world.final(body["postid"])
    assert summary["message"] == "Summary of the recording." and summary["user_id"] == bot.id
    whisper = next(r for r in world.openai.requests if r.path == "/v1/audio/transcriptions")
    assert whisper.body["response_format"] == "vtt" and whisper.body["file"]["filename"] == "standup.m4a"
    [attached] = summary["file_ids"]
    info, content = world.mm.state.files[attached]
    assert info["name"] == "transcript.vtt" and content == CALL_VTT and info["user_id"] == bot.id
    assert summary["props"]["referenced_recording_file_id"] == audio["id"]
    summarised = next(r.body for r in reversed(world.openai.requests) if r.path != whisper.path)
    assert "Ana: We ship the release on Friday." in json.dumps(summarised)


async def test_a_file_that_is_neither_transcript_nor_audio_is_refused_with_400(world: World) -> None:
    await world.agent("picky")
    eve = world.mm.add_user("eve")
    town = world.town("pdf-town", eve)
    pdf = world.mm.add_file(eve, "slides.pdf", b"%PDF-1.7", "application/pdf")
    post = world.mm.add_post(eve, town, "slides", file_ids=[pdf["id"]])
    status, body, _ = await world.h.request(
        "POST", f"/post/{post['id']}/transcribe/file/{pdf['id']}?botUsername=picky", user=eve
    )
    assert status == 400 and "recording" in body["error"]
    assert_matches_openapi("POST", "/post/{postid}/transcribe/file/{fileid}", 400, body)
