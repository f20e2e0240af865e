"""Conversations end to end through the gateway: a user's post in the fake Mattermost reaches the
gateway over its bot WebSocket, the llm service runs the turn against a fake OpenAI upstream, the
real tools service runs Mattermost tools, and the answer streams into the bot's reply post.

Everything is asserted where users see it: the posts, their props and the routes' answers.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from services.llm.conversations.approvals import FAILURE_CAP_INSTRUCTION
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeChannel, FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")
NO_SUCH_CHANNEL = "n" * 26

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PATCH_INTERVAL = 0.2
DAY_MS = 24 * 3600 * 1000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        env = {
            **FAST,
            "AGENTS_GATEWAY_PATCH_INTERVAL_SECONDS": str(PATCH_INTERVAL),
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_LLM_TOKEN_USAGE_LOG_PATH": str(tmp_path_factory.mktemp("usage") / "agents" / "token_usage.log"),
        }
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


async def test_a_dm_streams_into_the_reply_with_throttled_patches_and_final_props(world: World) -> None:
    bot = await world.agent("streamer")
    alice = world.mm.add_user("alice")
    dm = world.mm.add_direct_channel(alice, bot)
    answer = " ".join(f"word{i}" for i in range(40))
    world.openai.enqueue(FakeResponse.text(answer, tokens=40, token_delay=0.03), FakeResponse.text("Title"))
    post = await world.mm.user_posts(alice, dm, "tell me forty words")
    reply = await world.answer_to(post)
    assert reply["message"] == answer and reply["props"]["agents_stream_status"] == "done"
    props = reply["props"]
    assert props["conversation_id"] and props["responding_to"] == post["id"]
    assert props["llm_requester_user_id"] == alice.id and props["unsafe_links"] == "true"
    assert reply["user_id"] == bot.id and reply["root_id"] == post["id"] and reply["type"] == "custom_llmbot"
    patches = world.patches_of(reply["id"])
    # Several patches while tokens arrive, far fewer than tokens, never closer than the interval
    # (the last one is the final patch, which does not wait).
    assert 3 <= len(patches) <= 20
    gaps = [b.at - a.at for a, b in itertools.pairwise(patches[:-1])]
    assert all(gap >= PATCH_INTERVAL * 0.8 for gap in gaps), gaps


async def test_a_claim_that_expired_while_its_replica_answers_is_not_taken_over_by_that_replica(
    world: World,
) -> None:
    """Renewals that land too late (a busy llm or database) let the lease run out while this
    replica still answers: its own sweep then takes the claim, and must not start a second
    renderer writing the same reply."""
    bot = await world.agent("selfsweep")
    ivy = world.mm.add_user("ivy-self")
    dm = world.mm.add_direct_channel(ivy, bot)
    answer = " ".join(f"step{i}" for i in range(30))
    world.openai.enqueue(FakeResponse.text(answer, tokens=30, token_delay=0.1), FakeResponse.text("Title"))
    post = await world.mm.user_posts(ivy, dm, "walk me through it")
    [reply] = await poll(lambda: world.replies_to(post["id"]))
    await poll(lambda: world.mm.post(reply["id"])["message"].strip(), within=10)
    async with await psycopg.AsyncConnection.connect(world.h.database_url, autocommit=True) as conn:
        expired = await conn.execute("UPDATE llm_handledposts SET leaseuntil = 0 WHERE postid = %s", (post["id"],))
        assert expired.rowcount == 1
    final = await world.final(reply["id"], within=30)
    assert final["props"]["agents_stream_status"] == "done" and final["message"] == answer
    logs = world.h.logs["gateway"]
    assert any("a claim expired while this replica answered it" in line for line in logs)
    assert not any("taking over a reply" in line and reply["id"] in line for line in logs)


async def test_a_mention_in_a_channel_thread_is_answered_in_that_thread(world: World) -> None:
    bot = await world.agent("threader")
    bob = world.mm.add_user("bob")
    town = world.town("thread-town", bob, bot)
    root = world.mm.add_post(bob, town, "The build is red again.")
    world.openai.enqueue(FakeResponse.text("The build fails in the lint step."))
    post = await world.mm.user_posts(bob, town, "@threader why?", root_id=root["id"])
    reply = await world.answer_to(post)
    assert reply["channel_id"] == town.id and reply["root_id"] == root["id"]
    assert reply["message"] == "The build fails in the lint step."
    asked = next(r for r in world.openai.requests if "@threader why?" in json.dumps(r.body))
    assert "The build is red again." in json.dumps(asked.body["messages"])


async def test_a_tool_call_runs_only_when_the_requester_accepts_it(world: World) -> None:
    bot = await world.agent("poster", auto_enable_new_mcp_tools=True)
    carol, dan = world.mm.add_user("carol"), world.mm.add_user("dan")
    town = world.town("tool-town", carol, dan)
    dm = world.mm.add_direct_channel(carol, bot)
    note = "Standup moved to 10:00"
    arguments = json.dumps({"channel_id": town.id, "message": note})
    world.openai.enqueue(
        FakeResponse.tool_call("create_post", arguments, call_id="call_post"),
        FakeResponse.text("Title"),
        FakeResponse.text("Posted the note."),
    )
    post = await world.mm.user_posts(carol, dm, "tell the town standup moved to 10")
    reply = await world.answer_to(post)
    assert reply["props"]["agents_stream_status"] == "awaiting_approval"
    [call] = json.loads(reply["props"]["pending_tool_call"])
    assert call["id"] == "call_post" and call["name"] == "create_post" and call["status"] == "pending"
    await poll(lambda: world.openai.queued == 1)  # the title (after the answer) took its scripted answer

    status, body, _ = await world.h.request(
        "POST", f"/post/{reply['id']}/tool_call", user=dan, json_body={"accepted_tool_ids": ["call_post"]}
    )
    assert status == 403
    assert_matches_openapi("POST", "/post/{postid}/tool_call", 403, body)
    assert world.posts_with(note) == []

    status, _, _ = await world.h.request(
        "POST", f"/post/{reply['id']}/tool_call", user=carol, json_body={"accepted_tool_ids": ["call_post"]}
    )
    assert status == 200
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Posted the note.", within=20)
    final = await world.final(reply["id"])
    assert final["props"]["agents_stream_status"] == "done"
    [created] = world.posts_with(note)
    assert created["channel_id"] == town.id
    [call] = json.loads(final["props"]["pending_tool_call"])
    assert call["status"] == "success"


async def test_three_failed_tool_calls_end_in_an_explanation_shown_in_the_post(world: World) -> None:
    bot = await world.agent("stumbler", auto_enable_new_mcp_tools=True)
    erin = world.mm.add_user("erin")
    dm = world.mm.add_direct_channel(erin, bot)
    bad = json.dumps({"channel_id": "no-such-channel"})
    world.openai.enqueue(
        *(FakeResponse.tool_call("read_channel", bad, call_id=f"call_{i}") for i in range(3)),
        FakeResponse.text("I could not read that channel three times; which one did you mean?"),
        FakeResponse.text("Title"),
    )
    post = await world.mm.user_posts(erin, dm, "read the channel")
    reply = await world.answer_to(post)
    assert reply["message"] == "I could not read that channel three times; which one did you mean?"
    calls = json.loads(reply["props"]["pending_tool_call"])
    assert [c["status"] for c in calls] == ["error"] * 3
    explain = next(r for r in reversed(world.openai.requests) if FAILURE_CAP_INSTRUCTION in json.dumps(r.body))
    assert "tools" not in explain.body


async def test_stop_keeps_the_text_so_far_and_marks_the_post_stopped(world: World) -> None:
    bot = await world.agent("talker")
    fay = world.mm.add_user("fay")
    dm = world.mm.add_direct_channel(fay, bot)
    long = "story " * 60
    world.openai.enqueue(FakeResponse.text(long, tokens=60, token_delay=0.1), FakeResponse.text("Title"))
    post = await world.mm.user_posts(fay, dm, "a long story please")
    [reply] = await poll(lambda: world.replies_to(post["id"]))
    live = world.mm.post(reply["id"])
    await poll(lambda: live["message"].strip(), within=10)
    status, _, _ = await world.h.request("POST", f"/post/{reply['id']}/stop", user=fay)
    assert status == 200
    final = await world.final(reply["id"])
    assert final["props"]["agents_stream_status"] == "stopped"
    assert final["message"] and len(final["message"]) < len(long)


async def test_regenerate_rewrites_the_same_post(world: World) -> None:
    bot = await world.agent("redoer")
    gus = world.mm.add_user("gus")
    dm = world.mm.add_direct_channel(gus, bot)
    world.openai.enqueue(FakeResponse.text("First try."), FakeResponse.text("Title"))
    post = await world.mm.user_posts(gus, dm, "answer twice")
    reply = await world.answer_to(post)
    assert reply["message"] == "First try."
    await poll(lambda: world.openai.queued == 0)  # the title (after the answer) took its scripted answer
    world.openai.enqueue(FakeResponse.text("Second try."))
    status, _, _ = await world.h.request("POST", f"/post/{reply['id']}/regenerate", user=gus)
    assert status == 200
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Second try.", within=20)
    assert (await world.final(reply["id"]))["props"]["agents_stream_status"] == "done"
    assert len(world.replies_to(post["id"])) == 1


async def test_a_thread_summary_streams_into_a_new_dm_post(world: World) -> None:
    bot = await world.agent("summer")
    hal, ida = world.mm.add_user("hal"), world.mm.add_user("ida")
    town = world.town("summary-town", hal, ida)
    root = world.mm.add_post(ida, town, "Should we ship on Friday?")
    world.mm.add_post(hal, town, "Only if QA signs off.", root_id=root["id"])
    world.openai.enqueue(FakeResponse.text("Ship Friday if QA signs off."))
    status, body, _ = await world.h.request(
        "POST",
        f"/post/{root['id']}/analyze?botUsername=summer",
        user=hal,
        json_body={"analysis_type": "summarize_thread"},
    )
    assert status == 200
    assert_matches_openapi("POST", "/post/{postid}/analyze", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"] == "Ship Friday if QA signs off."
    assert summary["channel_id"] == body["channelid"] and summary["user_id"] == bot.id
    assert summary["props"]["referenced_thread"] == root["id"] and summary["props"]["prompt_type"] == "summarize_thread"
    assert world.mm.state.channels[body["channelid"]]["type"] == "D"


async def test_a_channel_since_summary_covers_recent_posts_and_cannot_be_regenerated(world: World) -> None:
    await world.agent("catchup")
    jo = world.mm.add_user("jo")
    town = world.town("since-town", jo)
    now = int(time.time() * 1000)
    world.mm.add_post(jo, town, "ancient history", create_at=now - 3 * 24 * 3600 * 1000)
    world.mm.add_post(jo, town, "fresh news")
    world.openai.enqueue(FakeResponse.text("Only fresh news."))
    status, body, _ = await world.h.request(
        "POST",
        f"/channel/{town.id}/interval?botUsername=catchup",
        user=jo,
        json_body={"start_time": now - 3600 * 1000, "end_time": 0, "preset_prompt": "summarize_unreads"},
    )
    assert status == 200
    assert_matches_openapi("POST", "/channel/{channelid}/interval", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"] == "Only fresh news." and summary["props"]["no_regen"] == "true"
    sent = json.dumps(world.openai.requests[-1].body)
    assert "fresh news" in sent and "ancient history" not in sent
    status, _, _ = await world.h.request("POST", f"/post/{body['postid']}/regenerate", user=jo)
    assert status == 400


async def test_an_image_on_the_post_reaches_the_provider_when_the_agent_has_vision(world: World) -> None:
    bot = await world.agent("seer", enable_vision=True)
    kay = world.mm.add_user("kay")
    dm = world.mm.add_direct_channel(kay, bot)
    image = world.mm.add_file(kay, "chart.png", PNG, "image/png")
    world.openai.enqueue(FakeResponse.text("A chart."), FakeResponse.text("Title"))
    post = await world.mm.user_posts(kay, dm, "what is in this picture?", file_ids=[image["id"]])
    reply = await world.answer_to(post)
    assert reply["message"] == "A chart."
    sent = next(r for r in world.openai.requests if "what is in this picture?" in json.dumps(r.body))
    parts = [p for m in sent.body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    assert any(
        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts
    )


async def test_reasoning_enabled_alone_makes_the_agent_reason_with_the_default_effort(world: World) -> None:
    bot = await world.agent("thinker", reasoning_enabled=True)  # no effort, no budget: as a new agent has
    ria = world.mm.add_user("ria")
    dm = world.mm.add_direct_channel(ria, bot)
    world.openai.enqueue(FakeResponse.text("Thought it through."), FakeResponse.text("Title"))
    post = await world.mm.user_posts(ria, dm, "think about this one")
    reply = await world.answer_to(post)
    assert reply["message"] == "Thought it through."
    sent = next(r for r in world.openai.requests if "think about this one" in json.dumps(r.body))
    assert sent.body["reasoning_effort"] == "medium"


async def test_react_adds_the_emoji_the_agent_chose_as_the_caller(world: World) -> None:
    await world.agent("reactor")
    liz = world.mm.add_user("liz")
    town = world.town("react-town", liz)
    post = world.mm.add_post(liz, town, "We shipped the release!")
    world.openai.enqueue(FakeResponse.text(":tada:", tokens=2))
    status, _, _ = await world.h.request("POST", f"/post/{post['id']}/react?botUsername=reactor", user=liz)
    assert status == 200
    # The llm service adds the operation's instruction before the post it was sent.
    system, user = world.openai.requests[-1].body["messages"]
    assert system["role"] == "system" and "emoji" in json.dumps(system)
    assert user["role"] == "user" and "We shipped the release!" in json.dumps(user)
    assert {"user_id": liz.id, "post_id": post["id"], "emoji_name": "tada"}.items() <= world.mm.state.reactions[
        -1
    ].items()
    # The short-lived token made to react as the caller is revoked again.
    made = [r for r in world.mm.requests_to("POST", f"/api/v4/users/{liz.id}/tokens") if r.status == 201]
    assert len(made) == 1
    assert made[0].response_json["token"] not in world.mm.state.tokens


async def test_loop_in_agent_answers_the_callers_thread_reply_in_its_thread(world: World) -> None:
    bot = await world.agent("looper")
    mo, ned = world.mm.add_user("mo"), world.mm.add_user("ned")
    town = world.town("loop-town", mo, ned, bot)
    root = world.mm.add_post(mo, town, "Which region is cheapest?")
    world.mm.add_post(bot, town, "Probably us-east-1.", root_id=root["id"])  # type: ignore[arg-type]
    follow_up = world.mm.add_post(mo, town, "And for storage?", root_id=root["id"])
    status, body, _ = await world.h.request(
        "POST", f"/post/{follow_up['id']}/loop_in_agent?botUsername=looper", user=ned
    )
    assert status == 403
    assert_matches_openapi("POST", "/post/{postid}/loop_in_agent", 403, body)
    world.openai.enqueue(FakeResponse.text("Storage is cheapest in us-east-2."))
    status, _, _ = await world.h.request("POST", f"/post/{follow_up['id']}/loop_in_agent?botUsername=looper", user=mo)
    assert status == 200
    reply = await world.answer_to(follow_up)
    assert reply["root_id"] == root["id"] and reply["message"] == "Storage is cheapest in us-east-2."


async def test_a_channel_analysis_streams_into_a_dm_post(world: World) -> None:
    await world.agent("analyst")
    oz = world.mm.add_user("oz")
    town = world.town("analyze-town", oz)
    world.mm.add_post(oz, town, "Decision: we migrate on Monday.")
    world.openai.enqueue(FakeResponse.text("The team migrates on Monday."))
    status, body, _ = await world.h.request(
        "POST",
        f"/channel/{town.id}/analyze?botUsername=analyst",
        user=oz,
        json_body={"analysis_type": "summarize", "days": 2},
    )
    assert status == 200
    assert_matches_openapi("POST", "/channel/{channelid}/analyze", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"] == "The team migrates on Monday."
    assert "Decision: we migrate on Monday." in json.dumps(world.openai.requests[-1].body)


async def analyze_and_read_prompt(
    world: World, bot: str, user: FakeUser, town: FakeChannel, payload: dict[str, Any]
) -> str:
    """Run a channel analysis through the gateway; the provider request it made, as JSON text."""
    world.openai.enqueue(FakeResponse.text("Summary."))
    status, body, _ = await world.h.request(
        "POST", f"/channel/{town.id}/analyze?botUsername={bot}", user=user, json_body=payload
    )
    assert status == 200, body
    assert_matches_openapi("POST", "/channel/{channelid}/analyze", 200, body)
    assert (await world.final(body["postid"]))["message"] == "Summary."
    return json.dumps(world.openai.requests[-1].body)


async def test_the_popover_days_mode_summarizes_only_the_last_days(world: World) -> None:
    await world.agent("dayer")
    pia = world.mm.add_user("pia")
    town = world.town("days-town", pia)
    now = int(time.time() * 1000)
    world.mm.add_post(pia, town, "last week's plan", create_at=now - 5 * DAY_MS)
    world.mm.add_post(pia, town, "yesterday's plan", create_at=now - DAY_MS // 2)
    sent = await analyze_and_read_prompt(world, "dayer", pia, town, {"analysis_type": "days", "days": 2})
    assert "yesterday's plan" in sent and "last week's plan" not in sent


async def test_the_popover_date_range_mode_summarizes_only_posts_within_the_range(world: World) -> None:
    await world.agent("ranger")
    ray = world.mm.add_user("ray")
    town = world.town("range-town", ray)
    now = int(time.time() * 1000)
    for days_ago, text in [(6, "too early"), (3, "in range"), (1, "too late")]:
        world.mm.add_post(ray, town, text, create_at=now - days_ago * DAY_MS)
    since, until = (dt.datetime.fromtimestamp((now - d * DAY_MS) / 1000, dt.UTC).isoformat() for d in (4, 2))
    payload = {"analysis_type": "date_range", "since": since, "until": until}
    sent = await analyze_and_read_prompt(world, "ranger", ray, town, payload)
    assert "in range" in sent and "too early" not in sent and "too late" not in sent


async def test_the_popover_unreads_mode_summarizes_posts_after_the_users_last_view(world: World) -> None:
    await world.agent("unreader")
    sam = world.mm.add_user("sam")
    town = world.town("unread-town", sam)
    now = int(time.time() * 1000)
    world.mm.add_post(sam, town, "already seen", create_at=now - 2 * 3600 * 1000)
    world.mm.state.channel_members[(town.id, sam.id)]["last_viewed_at"] = now - 3600 * 1000
    world.mm.add_post(sam, town, "not seen yet")
    sent = await analyze_and_read_prompt(world, "unreader", sam, town, {"analysis_type": "summarize_unreads"})
    assert "not seen yet" in sent and "already seen" not in sent


async def test_the_popover_custom_mode_sends_the_users_prompt_with_the_posts(world: World) -> None:
    await world.agent("customer")
    tia = world.mm.add_user("tia")
    town = world.town("custom-town", tia)
    world.mm.add_post(tia, town, "Pepperoni and basil for Friday.")
    payload = {"analysis_type": "custom", "prompt": "List every pizza topping mentioned"}
    sent = await analyze_and_read_prompt(world, "customer", tia, town, payload)
    assert "List every pizza topping mentioned" in sent and "Pepperoni and basil for Friday." in sent


async def test_bad_popover_values_are_refused_with_400_naming_the_field(world: World) -> None:
    await world.agent("strict")
    uma = world.mm.add_user("uma")
    town = world.town("strict-town", uma)
    cases = [
        ({"analysis_type": "days", "days": -1}, "days"),
        ({"analysis_type": "days"}, "days"),
        ({"analysis_type": "date_range", "since": "2026-03-05", "until": "2026-03-01"}, "until"),
        ({"analysis_type": "date_range", "until": "2026-03-01"}, "since"),
        ({"analysis_type": "date_range", "since": "yesterday"}, "since"),
        ({"analysis_type": "custom", "prompt": "  "}, "prompt"),
    ]
    for payload, field in cases:
        status, body, _ = await world.h.request(
            "POST", f"/channel/{town.id}/analyze?botUsername=strict", user=uma, json_body=payload
        )
        assert status == 400 and body["error"].startswith(field), (payload, body)
        assert_matches_openapi("POST", "/channel/{channelid}/analyze", 400, body)


async def test_a_summary_of_a_channel_that_does_not_exist_is_404_and_leaves_no_reply_post(world: World) -> None:
    bot = await world.agent("nowhere")
    cases = [
        (f"/channel/{NO_SUCH_CHANNEL}/interval", {"start_time": 1, "preset_prompt": "summarize_range"}),
        (f"/channel/{NO_SUCH_CHANNEL}/analyze", {"analysis_type": "summarize"}),
    ]
    for path, payload in cases:
        # A system admin may read every channel: only the channel's absence can refuse this.
        status, body, _ = await world.h.request(
            "POST", f"{path}?botUsername=nowhere", user=world.admin, json_body=payload
        )
        assert status == 404 and body["error"], (path, body)
    assert [p for p in world.mm.state.posts.values() if p["user_id"] == bot.id and not p["delete_at"]] == []


async def test_a_thread_analysis_refused_before_it_starts_leaves_no_streaming_reply_post(world: World) -> None:
    bot = await world.agent("picky")
    quill = world.mm.add_user("quill")
    town = world.town("picky-town", quill)
    root = world.mm.add_post(quill, town, "Summarise me")
    # Only the llm service reads the thread: the turn is refused after the reply post exists.
    world.mm.fail_next(f"/api/v4/posts/{root['id']}/thread", 403)
    status, body, _ = await world.h.request(
        "POST", f"/post/{root['id']}/analyze?botUsername=picky", user=quill, json_body={"analysis_type": "action_items"}
    )
    assert status == 403, body
    assert [p for p in world.mm.state.posts.values() if p["user_id"] == bot.id and not p["delete_at"]] == []


async def test_postback_summary_posts_the_summary_into_the_meeting_thread(world: World) -> None:
    bot = await world.agent("minutes")
    pat = world.mm.add_user("pat")
    calls = world.mm.add_user("calls", is_bot=True)
    town = world.town("meeting-town", pat, calls)
    recording = world.mm.add_post(calls, town, "Call ended")
    dm = world.mm.add_direct_channel(pat, bot)
    summary = world.mm.add_post(
        bot,  # type: ignore[arg-type]
        dm,
        "We agreed to ship.",
        props={"referenced_transcript_post_id": recording["id"], "llm_requester_user_id": pat.id},
    )
    status, body, _ = await world.h.request("POST", f"/post/{summary['id']}/postback_summary", user=pat)
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/postback_summary", 200, body)
    assert body == {"rootid": recording["id"], "channelid": town.id}
    [posted] = [p for p in world.mm.state.posts.values() if p["type"] == "custom_llm_postback"]
    assert posted["message"] == "We agreed to ship." and posted["root_id"] == recording["id"]
    assert posted["props"]["userid"] == pat.id and posted["props"]["bot_user_id"] == bot.id


async def test_summarize_transcription_of_a_post_not_by_calls_or_zoom_is_refused_with_400(world: World) -> None:
    await world.agent("scribe")
    quinn = world.mm.add_user("quinn")
    town = world.town("transcript-town", quinn)
    vtt = world.mm.add_file(quinn, "t.vtt", b"WEBVTT\n\n00:00.000 --> 00:01.000\n<v Quinn>hi</v>\n", "text/vtt")
    post = world.mm.add_post(quinn, town, "my transcript", file_ids=[vtt["id"]])
    status, body, _ = await world.h.request("POST", f"/post/{post['id']}/summarize_transcription", user=quinn)
    assert status == 400 and "calls or zoom" in body["error"]
    assert_matches_openapi("POST", "/post/{postid}/summarize_transcription", 400, body)


async def test_tool_decisions_in_a_channel_need_channel_tool_calling(world: World) -> None:
    bot = await world.agent("chantools")
    rae = world.mm.add_user("rae")
    town = world.town("chantool-town", rae, bot)
    reply = world.mm.add_post(
        bot,  # type: ignore[arg-type]
        town,
        "",
        props={"conversation_id": "c1", "llm_requester_user_id": rae.id},
    )
    status, body, _ = await world.h.request(
        "POST", f"/post/{reply['id']}/tool_call", user=rae, json_body={"accepted_tool_ids": ["x"]}
    )
    assert status == 403 and "enableChannelMentionToolCalling" in body["error"]
    assert_matches_openapi("POST", "/post/{postid}/tool_call", 403, body)


async def test_token_usage_is_logged_as_json_lines_only_while_the_admin_setting_is_on(world: World) -> None:
    await world.agent("counter")
    una = world.mm.add_user("una")
    town = world.town("usage-town", una)
    log = Path(world.h.cluster.environment()["AGENTS_LLM_TOKEN_USAGE_LOG_PATH"])  # type: ignore[union-attr]

    async def set_logging(on: bool) -> None:
        seen = len(world.h.logs.get("llm", []))
        status, config = await world.h.get("/admin/config", user=world.admin)
        assert status == 200
        status, body, _ = await world.h.request(
            "PUT", "/admin/config", user=world.admin, json_body={**config, "enableTokenUsageLogging": on}
        )
        assert status == 200, body
        applied = f"token usage logging {'on' if on else 'off'}"
        await poll(lambda: any(applied in line for line in world.h.logs.get("llm", [])[seen:]), within=15)

    async def complete(text: str) -> None:
        world.openai.enqueue(FakeResponse.text(text, tokens=2, usage=(9, 2)))
        body = {"posts": [{"role": "user", "message": "hi"}], "user_id": una.id, "channel_id": town.id}
        # Una's own token: a bridge request acts as its user, who may name herself.
        headers = {"Mattermost-Plugin-ID": "com.example.usage", "Authorization": f"Bearer {una.token}"}
        status, answer, _ = await world.h.request(
            "POST", "/bridge/v1/completion/agent/counter/nostream", json_body=body, headers=headers
        )
        assert status == 200 and answer == {"completion": text}

    def lines() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    await set_logging(True)
    await complete("counted")
    [record] = await poll(lambda: lines(), within=10)
    assert (record["user_id"], record["team_id"], record["bot_username"]) == (una.id, town.team_id, "counter")
    assert (record["input_tokens"], record["output_tokens"], record["total_tokens"]) == (9, 2, 11)
    await set_logging(False)
    await complete("not counted")
    # Records are written in order: once the next logged call's line is there, a line for the
    # call made while logging was off would be there too.
    await set_logging(True)
    await complete("counted again")
    await poll(lambda: len(lines()) >= 2, within=10)
    assert len(lines()) == 2
    # A conversation turn is recorded like an LLM RPC: the answer and its title, each a line.
    bot = await world.agent("counted-dm")
    dm = world.mm.add_direct_channel(una, bot)
    world.openai.enqueue(FakeResponse.text("a counted answer", tokens=3, usage=(12, 3)))
    world.openai.enqueue(FakeResponse.text("Counted", tokens=1, usage=(5, 1)))
    await world.answer_to(await world.mm.user_posts(una, dm, "count this turn"))
    turn = await poll(lambda: [r for r in lines() if r["operation"] == "conversation"], within=10)
    assert [(r["user_id"], r["bot_username"], r["total_tokens"]) for r in turn] == [(una.id, "counted-dm", 15)]
    await poll(lambda: [r for r in lines() if r["operation"] == "title_generation"], within=10)
    await set_logging(False)
