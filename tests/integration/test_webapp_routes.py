"""Routes and flows the plugin's webapp relies on, end to end through the gateway: a conversation's
context breakdown, the tool-driven channel analysis and AskUserQuestion. Every answer is checked
against the plugin's OpenAPI document."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.contract.openapi import assert_matches_openapi
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres, wait_serving
from tests.integration.conversation_support import FAST, World
from tests.integration.registry_support import seed_file
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        # Channel tool calling on: the stage-2 approval (/tool_result) exists only in channels.
        seed = seed_file({"enableChannelMentionToolCalling": True})
        env = {**FAST, "AGENTS_INDEX_LICENSE": "enterprise", "AGENTS_INDEX_CONFIG_SEED_FILE": seed}
        async with ClusterHarness(postgres, env=env) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


async def test_a_conversations_context_breaks_its_tokens_down_by_source_for_its_owner(world: World) -> None:
    bot = await world.agent("counter")
    ada, eve = world.mm.add_user("ada"), world.mm.add_user("eve")
    dm = world.mm.add_direct_channel(ada, bot)
    world.openai.enqueue(FakeResponse.text("Paris is the capital of France."), FakeResponse.text("Title"))
    reply = await world.answer_to(await world.mm.user_posts(ada, dm, "What is the capital of France?"))
    path = f"/conversations/{reply['props']['conversation_id']}/context"

    status, body = await world.h.get(path, user=ada)
    assert status == 200, body
    assert_matches_openapi("GET", "/conversations/{conversationid}/context", 200, body)
    tokens = {c["source"]: c["tokens"] for c in body["components"]}
    assert tokens["system"] > 0 and tokens["history"] > 0
    assert body["total"] == sum(tokens.values())
    assert sum(c["proportion"] for c in body["components"]) == pytest.approx(1.0)
    # gpt-4o is counted with its own tokenizer, not estimated by length.
    assert body["total_source"] == "counted" and body["model"] == "gpt-4o"

    status, body = await world.h.get(path, user=eve)
    assert status == 403
    assert_matches_openapi("GET", "/conversations/{conversationid}/context", 403, body)


async def test_the_context_of_an_unknown_conversation_is_404(world: World) -> None:
    status, body = await world.h.get("/conversations/no-such-conversation/context", user=world.admin)
    assert status == 404
    assert_matches_openapi("GET", "/conversations/{conversationid}/context", 404, body)


def _offered_tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tools a provider request offers, by name, with their parameter schemas."""
    tools = [t.get("function", t) for t in body.get("tools", [])]
    return {t["name"]: t.get("parameters", {}) for t in tools}


async def test_a_channel_analysis_lets_the_model_read_that_channel_with_tools_bound_to_it(world: World) -> None:
    # An agent with no tools selected: the analysis force-loads its two channel readers.
    await world.agent("surveyor")
    uli = world.mm.add_user("uli")
    town = world.town("survey-town", uli)
    elsewhere = world.town("survey-elsewhere", uli)
    world.mm.add_post(uli, elsewhere, "Elsewhere: the budget is frozen.")
    world.mm.add_post(uli, town, "The launch slipped to May.")
    asked = len(world.openai.requests)
    # The model names another channel: the bound reader reads the analysed one all the same.
    read = json.dumps({"channel_id": elsewhere.id, "limit": 5})
    world.openai.enqueue(
        FakeResponse.tool_call("read_channel", read, call_id="call_read"),
        FakeResponse.text("The launch slipped to May."),
    )
    status, body, _ = await world.h.request(
        "POST",
        f"/channel/{town.id}/analyze?botUsername=surveyor",
        user=uli,
        json_body={"analysis_type": "summarize", "days": 1},
    )
    assert status == 200, body
    assert_matches_openapi("POST", "/channel/{channelid}/analyze", 200, body)
    summary = await world.final(body["postid"])
    assert summary["message"] == "The launch slipped to May."

    first, second = (r.body for r in world.openai.requests[asked:])
    tools = _offered_tools(first)
    assert set(tools) == {"read_channel", "get_channel_info"}
    assert "channel_id" not in tools["read_channel"].get("properties", {})
    # The tool ran without asking, on the analysed channel only.
    result = json.dumps([m for m in second["messages"] if m.get("role") == "tool"])
    assert "The launch slipped to May." in result and "budget is frozen" not in result
    # The webapp's context bar counts the readers the analysis offered.
    status, context = await world.h.get(f"/conversations/{summary['props']['conversation_id']}/context", user=uli)
    assert status == 200, context
    assert {c["source"] for c in context["components"]} >= {"system", "history", "tool_defs", "tool_results"}


async def test_ask_user_question_shows_the_choices_waits_across_a_restart_and_resumes_with_the_answer(
    world: World,
) -> None:
    bot = await world.agent("asker")
    vic, wes = world.mm.add_user("vic"), world.mm.add_user("wes")
    dm = world.mm.add_direct_channel(vic, bot)
    asked = {"question": "Which environment should I deploy to?", "options": ["staging", "production"]}
    world.openai.enqueue(
        FakeResponse.tool_call("ask_user_question", json.dumps(asked), call_id="call_ask"),
        FakeResponse.text("Title"),
        FakeResponse.text("Deploying to staging."),
    )
    reply = await world.answer_to(await world.mm.user_posts(vic, dm, "deploy the app"))
    assert reply["props"]["agents_stream_status"] == "awaiting_approval"
    assert reply["props"]["ask_user_question"] == {"tool_call_id": "call_ask", **asked}
    assert "Which environment should I deploy to?" in reply["message"] and "production" in reply["message"]
    await poll(lambda: world.openai.queued == 1)  # the title (after the pause) took its scripted answer

    # The question waits in the database, not in the process that asked it.
    assert world.h.cluster is not None
    await world.h.cluster.stop_service("llm", sig=signal.SIGKILL)
    await world.h.cluster.start_service("llm")
    await wait_serving(world.h.cluster.config.port("llm"))

    path = f"/post/{reply['id']}/answer_question"
    status, body, _ = await world.h.request("POST", path, user=wes, json_body={"answer": "staging"})
    assert status == 403, body

    async def not_an_option() -> tuple[int, Any] | None:
        status, body, _ = await world.h.request("POST", path, user=vic, json_body={"answer": "qa"})
        # 503 until the gateway's channel to the restarted llm reconnects.
        return None if status == 503 else (status, body)

    status, body = await poll(not_an_option, within=30, interval=0.2)
    assert status == 400 and "answer" in body["error"], body
    status, body, _ = await world.h.request("POST", path, user=vic, json_body={"answer": "staging"})
    assert status == 200, body

    await poll(lambda: world.mm.post(reply["id"])["message"] == "Deploying to staging.", within=20)
    final = await world.final(reply["id"])
    assert final["props"]["agents_stream_status"] == "done" and "ask_user_question" not in final["props"]
    [call] = json.loads(final["props"]["pending_tool_call"])
    assert call["name"] == "ask_user_question" and call["status"] == "success"
    # The model got the choice as the question's result.
    results = [m for m in world.openai.requests[-1].body["messages"] if m.get("role") == "tool"]
    assert results[-1]["tool_call_id"] == "call_ask" and "staging" in json.dumps(results[-1])

    # Answered once: a second answer is stale.
    status, body, _ = await world.h.request("POST", path, user=vic, json_body={"answer": "production"})
    assert status == 400, body


async def test_the_conversation_routes_the_webapp_reads_answer_in_the_plugins_shapes(world: World) -> None:
    bot = await world.agent("lister")
    xia = world.mm.add_user("xia")
    dm = world.mm.add_direct_channel(xia, bot)
    world.openai.enqueue(FakeResponse.text("Hello Xia."), FakeResponse.text("Greeting"))
    reply = await world.answer_to(await world.mm.user_posts(xia, dm, "hello"))

    async def titled() -> bool:
        # The title is stored after the provider served it: wait for the store, not the queue.
        _, found = await world.h.get("/ai_threads", user=xia)
        return bool(found) and found[0]["title"] == "Greeting"

    await poll(titled, within=20)
    status, threads = await world.h.get("/ai_threads", user=xia)
    assert status == 200
    assert_matches_openapi("GET", "/ai_threads", 200, threads)
    [thread] = threads
    assert thread["id"] == reply["props"]["conversation_id"] and thread["title"] == "Greeting"
    status, conversation = await world.h.get(f"/conversations/{thread['id']}", user=xia)
    assert status == 200
    assert_matches_openapi("GET", "/conversations/{conversationid}", 200, conversation)

    world.openai.enqueue(FakeResponse.text("Hi again, Xia."))
    status, body, _ = await world.h.request("POST", f"/post/{reply['id']}/regenerate", user=xia)
    assert status == 200
    assert_matches_openapi("POST", "/post/{postid}/regenerate", 200, body)
    await poll(lambda: world.mm.post(reply["id"])["message"] == "Hi again, Xia.", within=20)

    world.openai.enqueue(FakeResponse.text("wave"))
    status, body, _ = await world.h.request("POST", f"/post/{reply['id']}/react?botUsername=lister", user=xia)
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/react", 200, body)


async def test_a_channel_tool_call_is_approved_then_its_result_shared_with_tool_result(world: World) -> None:
    bot = await world.agent("sharer", auto_enable_new_mcp_tools=True)
    yan, zed = world.mm.add_user("yan"), world.mm.add_user("zed")
    town = world.town("share-town", yan, zed, bot)
    world.mm.add_post(zed, town, "The release train leaves on Thursday.")
    read = json.dumps({"channel_id": town.id})
    world.openai.enqueue(
        FakeResponse.tool_call("read_channel", read, call_id="call_read"),
        FakeResponse.text("The release train leaves on Thursday."),
    )
    reply = await world.answer_to(await world.mm.user_posts(yan, town, "@sharer when is the release?"))
    assert reply["props"]["agents_stream_status"] == "awaiting_approval"

    accepted = {"accepted_tool_ids": ["call_read"]}
    status, body, _ = await world.h.request("POST", f"/post/{reply['id']}/tool_call", user=yan, json_body=accepted)
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/tool_call", 200, body)
    # In a channel the result waits for the requester to choose what the channel may see.
    await poll(lambda: json.loads(world.mm.post(reply["id"])["props"]["pending_tool_call"])[0]["status"] == "success")
    path = f"/post/{reply['id']}/tool_result"
    status, body, _ = await world.h.request("POST", path, user=zed, json_body=accepted)
    assert status == 403
    assert_matches_openapi("POST", "/post/{postid}/tool_result", 403, body)
    status, body, _ = await world.h.request("POST", path, user=yan, json_body=accepted)
    assert status == 200, body
    assert_matches_openapi("POST", "/post/{postid}/tool_result", 200, body)

    await poll(lambda: world.mm.post(reply["id"])["message"] == "The release train leaves on Thursday.", within=20)
    # The shared result reached the model unredacted.
    results = [m for m in world.openai.requests[-1].body["messages"] if m.get("role") == "tool"]
    assert "release train" in json.dumps(results)


async def test_deleting_a_custom_prompt_is_for_its_creator_and_answers_204(world: World) -> None:
    ann, ben = world.mm.add_user("annp"), world.mm.add_user("benp")
    body = {"name": "Standup", "template": "Summarize {{ .ChannelName }}", "is_shared": True}
    status, prompt, _ = await world.h.request("POST", "/custom-prompts", user=ann, json_body=body)
    assert status == 201, prompt
    path = f"/custom-prompts/{prompt['id']}"
    status, refused, _ = await world.h.request("DELETE", path, user=ben)
    assert status == 404
    assert_matches_openapi("DELETE", "/custom-prompts/{id}", 404, refused)
    status, deleted, _ = await world.h.request("DELETE", path, user=ann)
    assert status == 204
    assert_matches_openapi("DELETE", "/custom-prompts/{id}", 204, deleted)
    status, listed = await world.h.get("/custom-prompts", user=ann)
    assert prompt["id"] not in {p["id"] for p in listed}
