"""The gateway's event-driven side end to end: bot tokens from the admin account, one WebSocket
per agent bot, a posted event answered into one reply post, ignore rules, the mention reminder.

The turn itself runs in the llm service; these tests assert what the gateway owns (the reply
post's creation, props and that it never stays "streaming"), whatever the turn's outcome.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.contract.openapi import assert_matches_openapi
from tests.fakes.mattermost.state import FakeUser
from tests.harness import ClusterHarness, SessionPostgres, insert_agent
from tests.integration.conversation_support import FAST
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")
# Ids of the shape of Mattermost's that name nothing: these routes refuse the request before looking.
POST_ID, FILE_ID, CHANNEL_ID = "p" * 26, "f" * 26, "c" * 26


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def harness(postgres: SessionPostgres) -> AsyncIterator[ClusterHarness]:
    async with ClusterHarness(postgres, env=FAST) as h:
        yield h


async def agent_bot(h: ClusterHarness, username: str) -> FakeUser:
    bot = h.mattermost.add_user(username, is_bot=True)
    await insert_agent(h.database_url, username, bot.id)
    await h.mattermost.wait_for_websockets(1, within=15, user_id=bot.id)
    return bot


def replies_to(h: ClusterHarness, post_id: str) -> list[dict[str, Any]]:
    return [
        p
        for p in h.mattermost.state.posts.values()
        if p["props"].get("responding_to") == post_id and not p["delete_at"]
    ]


async def test_the_gateway_creates_a_token_per_agent_bot_with_the_admin_account(harness: ClusterHarness) -> None:
    bot = await agent_bot(harness, "tokenbot")
    created = [r for r in harness.mattermost.requests_to("POST", f"/api/v4/users/{bot.id}/tokens") if r.status == 201]
    assert len(created) == 1
    assert created[0].user_id == harness.cluster_account.id  # type: ignore[union-attr]
    # The secret never reaches a log line.
    token = created[0].response_json["token"]
    assert not any(token in line for lines in harness.logs.values() for line in lines)


async def test_a_dm_to_an_agent_gets_one_reply_post_that_ends_final(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "dmbot")
    alice = mm.add_user("alice-dm")
    dm = mm.add_direct_channel(alice, bot)
    post = await mm.user_posts(alice, dm, "hello there")
    [reply] = await poll(lambda: replies_to(harness, post["id"]))
    assert reply["user_id"] == bot.id and reply["type"] == "custom_llmbot"
    assert reply["root_id"] == post["id"]
    assert reply["props"]["llm_requester_user_id"] == alice.id
    assert reply["props"]["unsafe_links"] == "true"
    await poll(lambda: reply["props"].get("agents_stream_status") not in (None, "streaming"), within=30)
    assert len(replies_to(harness, post["id"])) == 1


async def test_a_mention_in_a_channel_is_answered_in_its_thread(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "mentionbot")
    bob = mm.add_user("bob-mention")
    team = mm.add_team("mention-team")
    town = mm.add_channel(team.id, "mention-town")
    for user in (bob, bot):
        mm.add_member(team, user)
        mm.add_member(town, user)
    post = await mm.user_posts(bob, town, "@mentionbot what is new?")
    [reply] = await poll(lambda: replies_to(harness, post["id"]))
    assert reply["channel_id"] == town.id and reply["root_id"] == post["id"]


async def test_posts_by_the_bot_and_from_webhooks_are_not_answered(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "quietbot")
    carol = mm.add_user("carol-quiet")
    dm = mm.add_direct_channel(carol, bot)
    ignored = await mm.user_posts(carol, dm, "from a hook", props={"from_webhook": "true"})
    by_bot = await mm.user_posts(bot, dm, "I said this")  # type: ignore[arg-type]
    # A later post is answered: by then the earlier events were handled (same socket, in order).
    answered = await mm.user_posts(carol, dm, "and this?")
    await poll(lambda: replies_to(harness, answered["id"]))
    assert replies_to(harness, ignored["id"]) == [] and replies_to(harness, by_bot["id"]) == []


async def test_a_thread_reply_after_an_agent_without_a_mention_gets_the_reminder(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "reminderbot")
    dave = mm.add_user("dave-reminder")
    team = mm.add_team("reminder-team")
    town = mm.add_channel(team.id, "reminder-town")
    for user in (dave, bot):
        mm.add_member(team, user)
        mm.add_member(town, user)
    root = mm.add_post(dave, town, "question")
    mm.add_post(bot, town, "an answer", root_id=root["id"])  # type: ignore[arg-type]
    follow_up = await mm.user_posts(dave, town, "thanks, and then?", root_id=root["id"])

    def reminders() -> list[dict[str, Any]]:
        return [
            p
            for p in mm.state.posts.values()
            if p["type"] == "custom_agent_mention_reminder" and p["props"].get("target_post_id") == follow_up["id"]
        ]

    [reminder] = await poll(reminders)
    assert reminder["user_id"] == bot.id and reminder["root_id"] == root["id"]
    assert reminder["props"]["bot_username"] == "reminderbot"


async def test_stop_by_someone_other_than_the_requester_is_refused_with_403(harness: ClusterHarness) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "stopbot")
    erin, frank = mm.add_user("erin-stop"), mm.add_user("frank-stop")
    team = mm.add_team("stop-team")
    town = mm.add_channel(team.id, "stop-town")
    for user in (erin, frank, bot):
        mm.add_member(team, user)
        mm.add_member(town, user)
    post = await mm.user_posts(erin, town, "@stopbot go")
    [reply] = await poll(lambda: replies_to(harness, post["id"]))
    status, body, _ = await harness.request("POST", f"/post/{reply['id']}/stop", user=frank)
    assert status == 403
    assert_matches_openapi("POST", "/post/{postid}/stop", 403, body)


async def test_stop_with_a_body_is_refused_with_400(harness: ClusterHarness) -> None:
    user = harness.mattermost.add_user("gina-stop")
    status, body, _ = await harness.request("POST", f"/post/{POST_ID}/stop", user=user, data="{}")
    assert status == 400
    assert_matches_openapi("POST", "/post/{postid}/stop", 400, body)


@pytest.mark.parametrize("preset", ["summarize_everything"])
async def test_an_unknown_interval_preset_is_refused_with_400(harness: ClusterHarness, preset: str) -> None:
    user = harness.mattermost.add_user(f"hank-{preset}")
    status, body, _ = await harness.request(
        "POST", f"/channel/{CHANNEL_ID}/interval", user=user, json_body={"start_time": 0, "preset_prompt": preset}
    )
    assert status == 400 and "preset_prompt" in body["error"]
    assert_matches_openapi("POST", "/channel/{channelid}/interval", 400, body)


@pytest.mark.parametrize(
    "route",
    [
        f"/post/{POST_ID}/react",
        f"/post/{POST_ID}/summarize_transcription",
        f"/post/{POST_ID}/transcribe/file/{FILE_ID}",
        f"/post/{POST_ID}/regenerate",
        f"/post/{POST_ID}/postback_summary",
        f"/post/{POST_ID}/loop_in_agent",
    ],
)
async def test_routes_that_take_no_body_refuse_one_with_400(harness: ClusterHarness, route: str) -> None:
    user = harness.mattermost.add_user(f"ivy-{route.split('/')[3]}")
    status, body, _ = await harness.request("POST", route, user=user, data='{"x": 1}')
    assert status == 400 and "no request body" in body["error"]
    assert_matches_openapi("POST", route.replace(POST_ID, "{postid}").replace(FILE_ID, "{fileid}"), 400, body)


@pytest.mark.parametrize(
    ("route", "template", "bad"),
    [
        ("/post/{}/react", "/post/{postid}/react", "a" * 300),
        (f"/post/{POST_ID}/transcribe/file/{{}}", "/post/{postid}/transcribe/file/{fileid}", "F" * 26),
        ("/channel/{}/analyze", "/channel/{channelid}/analyze", "c" * 27),
    ],
)
async def test_a_path_id_that_is_no_mattermost_id_is_400_naming_it_and_mattermost_is_not_asked(
    harness: ClusterHarness, route: str, template: str, bad: str
) -> None:
    field = template.rsplit("{", 1)[1].split("}")[0]
    user = harness.mattermost.add_user(f"lou-{field}")
    asked = len(harness.mattermost.requests)
    status, body, _ = await harness.request("POST", route.format(bad), user=user)
    assert status == 400 and field in body["error"], body
    assert_matches_openapi("POST", template, 400, body)
    assert not [r.path for r in harness.mattermost.requests[asked:] if bad in r.path]


async def test_ai_actions_without_a_license_are_refused_with_403_naming_the_feature(
    harness: ClusterHarness,
) -> None:
    mm = harness.mattermost
    bot = await agent_bot(harness, "unlicensedbot")
    jay = mm.add_user("jay-license")
    calls = mm.add_user("calls", is_bot=True)
    team = mm.add_team("license-team")
    town = mm.add_channel(team.id, "license-town")
    for user in (jay, bot, calls):
        mm.add_member(team, user)
        mm.add_member(town, user)
    thread = mm.add_post(jay, town, "a thread to summarise")
    vtt = mm.add_file(calls, "t.vtt", b"WEBVTT\n\n00:00.000 --> 00:01.000\n<v Jay>hello</v>\n", "text/vtt")
    recording = mm.add_post(calls, town, "transcript", file_ids=[vtt["id"]])
    bot_q = "?botUsername=unlicensedbot"
    cases = [
        ("POST", f"/post/{thread['id']}/analyze{bot_q}", {"analysis_type": "summarize_thread"}, "AI actions"),
        (
            "POST",
            f"/channel/{town.id}/interval{bot_q}",
            {"start_time": 1, "preset_prompt": "summarize_range"},
            "channel summarization",
        ),
        ("POST", f"/channel/{town.id}/analyze{bot_q}", {"analysis_type": "summarize"}, "channel summarization"),
        ("POST", f"/post/{recording['id']}/summarize_transcription{bot_q}", None, "meeting transcripts"),
    ]
    for method, path, payload, feature in cases:
        status, body, _ = await harness.request(method, path, user=jay, json_body=payload)
        assert status == 403 and feature in body["error"], (path, body)


@pytest.mark.parametrize("analysis_type", [{"type": "summarize"}, ["summarize"]])
async def test_a_channel_analysis_type_that_is_not_a_string_is_refused_with_400(
    harness: ClusterHarness, analysis_type: object
) -> None:
    user = harness.mattermost.add_user(f"kim-{type(analysis_type).__name__}")
    status, body, _ = await harness.request(
        "POST", f"/channel/{CHANNEL_ID}/analyze", user=user, json_body={"analysis_type": analysis_type}
    )
    assert status == 400 and "analysis_type" in body["error"]
    assert_matches_openapi("POST", "/channel/{channelid}/analyze", 400, body)
