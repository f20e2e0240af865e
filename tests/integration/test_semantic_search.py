"""Semantic search end to end: posts indexed through agents.index.v1.Index (real index process,
pgvector in the session's PostgreSQL, the fake embeddings API), searched through the gateway's
``/search/raw`` and the Index.Search RPC, with channel membership read from the fake Mattermost
at query time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.index.v1 import index_pb2 as index_pb2
from agents.index.v1 import index_pb2_grpc as index_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from services.common.identity import Identity
from services.common.mattermost import MattermostClient
from tests.contract.openapi import assert_matches_openapi
from tests.fakes.embeddings import FakeEmbeddings
from tests.fakes.mattermost.state import FakeChannel, FakeTeam, FakeUser
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres, insert_agent
from tests.polling import poll

pytestmark = pytest.mark.asyncio(loop_scope="session")

DIMENSIONS = 64
# Permitted rows above this go through the iterative HNSW scan; at or below it, the exact scan.
EXACT_SCAN_ROWS = 20


@dataclass
class World:
    h: ClusterHarness
    embed: FakeEmbeddings
    index: index_pb2_grpc.IndexStub
    team: FakeTeam
    admin: FakeUser
    bot: FakeUser
    agent_id: str
    openai: FakeOpenAI

    @property
    def mm(self) -> Any:
        return self.h.mattermost

    def user(self, name: str, *channels: FakeChannel) -> FakeUser:
        user = self.mm.add_user(name)
        self.mm.add_member(self.team, user)
        for channel in channels:
            self.mm.add_member(channel, user)
        return user

    def channel(self, name: str, type: str = "O") -> FakeChannel:
        return self.mm.add_channel(self.team.id, name, type)

    async def post(self, user: FakeUser, channel: FakeChannel, message: str, **extra: Any) -> dict[str, Any]:
        """A post in Mattermost, indexed; returns its JSON."""
        post = self.mm.add_post(user, channel, message)
        await self.index_posts(as_message(post, channel, **extra))
        return post

    async def index_posts(self, *posts: index_pb2.Post) -> index_pb2.IndexPostsResponse:
        return await self.index.IndexPosts(index_pb2.IndexPostsRequest(posts=posts), metadata=self.h.metadata())

    async def raw(self, user: FakeUser, **body: Any) -> tuple[int, Any]:
        status, answer, _ = await self.h.request("POST", "/search/raw", user=user, json_body=body)
        if status == 200:
            assert_matches_openapi("POST", "/search/raw", 200, answer)
        return status, answer

    async def found(self, user: FakeUser, query: str, **body: Any) -> list[str]:
        status, answer = await self.raw(user, query=query, **body)
        assert status == 200, answer
        return [r["post_id"] for r in answer["results"]]

    async def search_posts(self, user: FakeUser, query: str) -> str:
        """The search_posts tool's answer to ``user`` in their DM with the agent's bot (a
        conversation in the team's context)."""
        arguments = struct_pb2.Struct()
        arguments.update({"query": query})
        context = tools_pb2.ToolContext(
            user_id=user.id,
            agent_id=self.agent_id,
            team_id=self.team.id,
            channel_id=self.mm.add_direct_channel(user, self.bot).id,
            is_direct_message=True,
            conversation_id=f"search-{user.id}",
        )
        reply = await tools_pb2_grpc.ToolsStub(self.h.channel("tools")).ExecuteTool(
            tools_pb2.ExecuteToolRequest(context=context, tool_name="search_posts", arguments=arguments),
            metadata=self.h.metadata(Identity(user_id=user.id)),
            timeout=20,
        )
        assert not reply.is_error, reply.content
        return reply.content


def as_message(post: dict[str, Any], channel: FakeChannel, **extra: Any) -> index_pb2.Post:
    return index_pb2.Post(
        id=post["id"],
        team_id=channel.team_id,
        channel_id=channel.id,
        user_id=post["user_id"],
        message=post["message"],
        create_at=post["create_at"],
        **extra,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with FakeEmbeddings() as embed, FakeOpenAI() as openai:
        seed = Path(tmp_path_factory.mktemp("search")) / "config.json"
        service = {
            "id": "svc",
            "name": "fake",
            "type": "openaicompatible",
            "apiKey": openai.api_key,
            "apiURL": openai.base_url,
            "defaultModel": "gpt-4o",
        }
        seed.write_text(json.dumps({"services": [service], "embeddingSearchConfig": embed.search_config(DIMENSIONS)}))
        env = {
            "AGENTS_INDEX_LICENSE": "enterprise",
            "AGENTS_INDEX_CONFIG_SEED_FILE": str(seed),
            "AGENTS_INDEX_EMBEDDING_PRIVATE_HOSTNAMES": "127.0.0.1",
            "AGENTS_INDEX_SEARCH_EXACT_SCAN_ROWS": str(EXACT_SCAN_ROWS),
        }
        async with ClusterHarness(postgres, env=env) as h:
            admin = h.mattermost.add_user("searchroot", roles="system_user system_admin")
            team = h.mattermost.add_team("searchers")
            h.mattermost.add_member(team, admin)
            bot = h.mattermost.add_user("seeker", is_bot=True)
            agent_id = await insert_agent(h.database_url, "seeker", bot.id, autoenablenewmcptools=True)
            yield World(h, embed, index_pb2_grpc.IndexStub(h.channel("index")), team, admin, bot, agent_id, openai)


async def test_a_search_finds_posts_only_in_channels_the_caller_is_a_member_of(world: World) -> None:
    town, secret = world.channel("town-square"), world.channel("secret-plans", "P")
    ann = world.user("ann", town)
    bea = world.user("bea", town, secret)
    cyd = world.user("cyd", town)
    dm = world.mm.add_direct_channel(bea, cyd)
    public = await world.post(bea, town, "the kangaroo release ships on friday")
    hidden = await world.post(bea, secret, "the kangaroo release is delayed secretly")
    private_dm = await world.post(cyd, dm, "kangaroo release gossip between us")
    assert set(await world.found(ann, "kangaroo release")) == {public["id"]}
    assert set(await world.found(bea, "kangaroo release")) == {public["id"], hidden["id"], private_dm["id"]}
    # An explicit filter on a channel the caller cannot read finds nothing (no error that leaks it).
    assert await world.found(ann, "kangaroo release", channel_id=secret.id) == []
    # The body cannot name another caller or channels: the gateway sets who searches.
    impersonating = await world.found(ann, "kangaroo release", user_id=bea.id)
    assert impersonating == [public["id"]]
    # A team filter is intersected with membership; DMs have no team.
    assert set(await world.found(bea, "kangaroo release", team_id=world.team.id)) == {public["id"], hidden["id"]}
    _, answer = await world.raw(bea, query="kangaroo release", channel_id=dm.id)
    result = answer["results"][0]
    assert result["channel_name"] == "Direct Message" and result["username"] == "cyd"
    assert result["content"] == private_dm["message"] and 0 < result["score"] <= 1
    assert result["create_at"] == private_dm["create_at"]


async def test_a_removed_member_and_an_archived_channel_stop_matching_at_once(world: World) -> None:
    ops, archive = world.channel("ops-room"), world.channel("old-room")
    eve = world.user("eve", ops, archive)
    in_ops = await world.post(eve, ops, "wombat migration checklist")
    in_archive = await world.post(eve, archive, "wombat migration notes")
    assert set(await world.found(eve, "wombat migration")) == {in_ops["id"], in_archive["id"]}
    del world.mm.state.channel_members[(ops.id, eve.id)]
    world.mm.state.channels[archive.id]["delete_at"] = world.mm.state.now()
    assert await world.found(eve, "wombat migration") == []


async def test_the_callers_channels_are_asked_while_the_query_is_embedded(world: World) -> None:
    """Each fake holds its request until the test releases both, which it does only once both
    have arrived: the search comes back only if the caller's channels are asked of Mattermost
    while the query is being embedded, not one after the other."""
    burrow = world.channel("quokka-burrow")
    uma = world.user("uma", burrow)
    post = await world.post(uma, burrow, "the quokka census starts at dawn")
    with world.mm.holding(f"/api/v4/users/{uma.id}/channels") as membership, world.embed.holding() as embedding:
        search = asyncio.create_task(world.found(uma, "quokka census"))
        try:
            await poll(
                lambda: membership.arrived and embedding.arrived,
                within=20,
                message=lambda: f"in flight at once: membership {membership.arrived}, embedding {embedding.arrived}",
            )
        finally:
            membership.release()
            embedding.release()
            found = await search
    assert found == [post["id"]]


async def test_a_membership_lookup_that_fails_answers_unavailable_naming_no_address(world: World) -> None:
    nook = world.channel("numbat-nook")
    vic = world.user("vic", nook)
    await world.post(vic, nook, "the numbat nook is open")
    world.mm.fail_next(f"/api/v4/users/{vic.id}/channels", 503, count=1000)
    try:
        status, answer = await world.raw(vic, query="numbat nook")
    finally:
        world.mm.drop_script()
    assert status == 503, answer
    assert "127.0.0.1" not in answer["error"] and str(world.mm.port) not in answer["error"], answer
    assert await world.found(vic, "numbat nook")


async def test_an_edit_replaces_the_posts_rows_and_a_delete_removes_them(world: World) -> None:
    desk = world.channel("help-desk")
    fay = world.user("fay", desk)
    post = await world.post(fay, desk, "platypus printer is jammed")
    assert await world.found(fay, "platypus printer") == [post["id"]]
    edited = as_message({**post, "message": "echidna scanner works again"}, desk)
    reply = await world.index_posts(edited)
    assert (reply.indexed, reply.chunks) == (1, 1)
    # The nearest rows are returned whatever their score: the old text must be gone, not just far.
    _, answer = await world.raw(fay, query="platypus printer")
    assert [r["content"] for r in answer["results"]] == ["echidna scanner works again"]
    deleted = await world.index.DeletePosts(
        index_pb2.DeletePostsRequest(post_ids=[post["id"], "unknownpostid00000000000000"]), metadata=world.h.metadata()
    )
    assert deleted.deleted == 1
    assert await world.found(fay, "echidna scanner") == []


async def test_posts_are_indexed_as_they_are_posted_edited_and_deleted(world: World) -> None:
    room = world.channel("live-room")
    nia = world.user("nia", room)
    # The agent's bot is in the channel: its WebSocket (kept by the gateway) sees the channel's posts.
    world.mm.add_member(room, world.bot)
    await poll(lambda: any(c.user_id == world.bot.id for c in world.mm.hub.connections), within=30)
    post = await world.mm.user_posts(nia, room, "the narwhal demo starts at noon")

    async def contents() -> list[str]:
        _, answer = await world.raw(nia, query="narwhal demo", channel_id=room.id)
        return [r["content"] for r in answer["results"]]

    async def shows(expected: list[str]) -> bool:
        return await contents() == expected

    # A new post is searchable within 5 s (the bound).
    await poll(lambda: shows([post["message"]]), within=5, message="the new post never became searchable")
    async with MattermostClient(world.mm.url, nia.token) as client:
        await client.patch_post(post["id"], message="the beluga demo moved to three")
        await poll(lambda: shows(["the beluga demo moved to three"]), message="the edit was not indexed")
        await client.delete_post(post["id"])
        await poll(lambda: shows([]), message="the deleted post stayed searchable")


async def test_an_agents_streaming_reply_costs_no_channel_lookup_per_edit(world: World) -> None:
    """A reply streams as edits of the bot's post, and each edit reaches the bot's WebSocket: none
    of them is indexable, so none may cost a Mattermost channel lookup (at 1,000 live answers
    that was one request per patch). A user's edit, which carries no channel, still costs one."""
    den = world.channel("otter-den")
    oli = world.user("oli", den)
    world.mm.add_member(den, world.bot)
    await poll(lambda: any(c.user_id == world.bot.id for c in world.mm.hub.connections), within=30)

    def lookups() -> int:
        path = f"/api/v4/channels/{den.id}"
        return sum(r.path == path for r in world.mm.requests_to("GET", path))

    before = lookups()
    reply = world.mm.add_post(world.bot, den, "thinking")
    async with MattermostClient(world.mm.url, world.bot.token) as bot:
        for words in ("the otter", "the otter census", "the otter census is done"):
            await bot.patch_post(reply["id"], message=words)
    post = await world.mm.user_posts(oli, den, "the otter census counted nine")
    async with MattermostClient(world.mm.url, oli.token) as client:
        await client.patch_post(post["id"], message="the otter census counted eleven")
    # Events reach the socket in order, each handled in a task of its own: by the time the
    # user's edit was looked up, the bot's edits' lookups (if any) had started too.
    await poll(lambda: lookups() > before, within=10, message="the user's edit was not looked up")
    await asyncio.sleep(0.5)
    assert lookups() - before == 1
    assert await world.found(oli, "otter census counted") == [post["id"]]


async def test_bot_and_system_posts_are_not_indexed(world: World) -> None:
    lab = world.channel("lab")
    gus = world.user("gus", lab)
    robot = world.mm.add_user("labbot", is_bot=True)
    by_bot = world.mm.add_post(robot, lab, "quokka build finished")
    joined = world.mm.add_post(gus, lab, "quokka joined the channel")
    mine = world.mm.add_post(gus, lab, "quokka build is flaky")
    reply = await world.index_posts(
        as_message(by_bot, lab, from_bot=True),
        as_message(joined, lab, type="system_join_channel"),
        as_message(mine, lab),
    )
    assert reply.indexed == 1
    assert await world.found(gus, "quokka build") == [mine["id"]]


async def test_a_user_in_few_channels_gets_a_full_page_of_results(world: World) -> None:
    """The plugin joined membership after a plain HNSW scan (ef_search 40): a user whose channels
    hold a few percent of the rows got a handful of results. Here 2 of 30 channels hold the
    user's 24 rows (above the exact-scan threshold, so the iterative HNSW scan answers)."""
    owner = world.user("hal")
    channels = [world.channel(f"numbat-{i}") for i in range(30)]
    for channel in channels:
        world.mm.add_member(channel, owner)
    posts = [
        index_pb2.Post(
            id=f"numbat{c:02d}{p:02d}".ljust(26, "0"),
            team_id=world.team.id,
            channel_id=channel.id,
            user_id=owner.id,
            message=f"numbat census report {c} {p}",
            create_at=1_700_000_000_000 + c * 100 + p,
        )
        for c, channel in enumerate(channels)
        for p in range(12)
    ]
    assert (await world.index_posts(*posts)).indexed == len(posts)
    ivy = world.user("ivy", channels[3], channels[17])
    mine = {p.id for p in posts if p.channel_id in {channels[3].id, channels[17].id}}
    assert len(mine) == 24 > EXACT_SCAN_ROWS
    found = await world.found(ivy, "numbat census report", limit=20)
    assert len(found) == 20 and set(found) <= mine
    # Paging continues where the first page ended, without gaps or repeats.
    rest = await world.found(ivy, "numbat census report", limit=20, offset=20)
    assert len(rest) == 4 and set(found) | set(rest) == mine

    def scanned_hnsw(spans: list[dict[str, Any]]) -> bool:
        return any(s["name"] == "semantic search" and "hnsw" in s["attributes"].get("search.scans", "") for s in spans)

    await world.h.wait_for_spans(scanned_hnsw)
    # One channel's 12 rows are under the threshold: ranked exactly.
    jay = world.user("jay", channels[5])
    assert len(await world.found(jay, "numbat census report", limit=15)) == 12


async def test_the_search_posts_tool_searches_semantically(world: World) -> None:
    # The cluster's account is not in the channel: Mattermost's keyword search could not find it.
    den = world.channel("axolotl-den")
    mo = world.user("mo", den)
    post = await world.post(mo, den, "the axolotl feeding schedule changed")
    assert post["message"] in await world.search_posts(mo, "when are the axolotls fed")


async def test_the_search_posts_tool_searches_what_search_does(world: World) -> None:
    """The tool asks the index as the user, as /search does: their DMs are searched (the
    conversation's team does not narrow them away) and a channel they left is not."""
    lab, left = world.channel("okapi-lab"), world.channel("okapi-annex")
    nell = world.user("nell", lab, left)
    oto = world.user("oto", lab)
    in_dm = await world.post(oto, world.mm.add_direct_channel(nell, oto), "okapi sighting report: in the dm")
    in_lab = await world.post(nell, lab, "okapi sighting report: in the lab")
    in_left = await world.post(nell, left, "okapi sighting report: in the annex")
    del world.mm.state.channel_members[(left.id, nell.id)]
    assert set(await world.found(nell, "okapi sighting report")) == {in_dm["id"], in_lab["id"]}
    content = await world.search_posts(nell, "okapi sighting report")
    assert in_dm["message"] in content and in_lab["message"] in content, content
    assert in_left["message"] not in content, content


async def test_search_answers_over_the_results_with_the_agents_model(world: World) -> None:
    room = world.channel("garden", "P")
    ola = world.user("ola", room)
    post = await world.post(ola, room, "the tomato seedlings go out in may")
    world.openai.enqueue(FakeResponse.text("Ola says the seedlings go out in May."))
    body = {"query": "when do the tomato seedlings go out", "channelId": room.id}
    status, answer, _ = await world.h.request("POST", "/search?botUsername=seeker", user=ola, json_body=body)
    assert status == 200, answer
    assert_matches_openapi("POST", "/search", 200, answer)
    assert answer["answer"] == "Ola says the seedlings go out in May."
    (result,) = answer["results"]
    assert result["index"] == 1 and result["postId"] == post["id"] and result["channelName"] == "garden"
    assert result["username"] == "ola" and result["teamName"] == "searchers"
    asked = json.dumps(world.openai.requests[-1].body)
    assert "the tomato seedlings go out in may" in asked and 'from=\\"ola\\"' in asked
    # Nothing readable matched: the plugin's answer, and no model call.
    calls = len(world.openai.requests)
    stranger = world.user("pat")
    status, answer, _ = await world.h.request("POST", "/search", user=stranger, json_body={"query": "tomato"})
    assert status == 200 and answer["results"] == [] and "couldn't find" in answer["answer"]
    assert len(world.openai.requests) == calls


async def test_bad_searches_are_refused_naming_the_field(world: World) -> None:
    kim = world.user("kim")
    for body, field in [
        ({"query": ""}, "query"),
        ({"query": "x" * 4001}, "query"),
        ({"query": "ok", "limit": 51}, "limit"),
        ({"query": "ok", "offset": -1}, "offset"),
    ]:
        status, answer = await world.raw(kim, **body)
        assert status == 400 and field in answer["error"], (body, status, answer)
    status, answer, _ = await world.h.request("POST", "/search", user=kim, json_body={"query": "ok", "maxResults": 101})
    assert status == 400 and "maxResults" in answer["error"], answer
    # Index.Search looks in a user's channels: it must be told whose.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.index.Search(index_pb2.SearchRequest(query="ok"), metadata=world.h.metadata())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id" in (refused.value.details() or "")
    # A call on a user's behalf cannot name another user to search as.
    other = index_pb2.SearchRequest(query="ok", user_id=world.user("kim-victim").id)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await world.index.Search(other, metadata=world.h.metadata(Identity(user_id=kim.id)))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_search_run_streams_the_answer_over_permitted_results_into_a_dm_with_the_agent(world: World) -> None:
    crew, vault = world.channel("crew", "P"), world.channel("vault", "P")
    rae, sid = world.user("rae", crew), world.user("sid", crew, vault)
    permitted = await world.post(sid, crew, "the launch review moved to thursday afternoon")
    await world.post(sid, vault, "the launch review secret codename is bluebird")
    world.openai.enqueue(FakeResponse.text("Sid says the launch review is on Thursday afternoon."))
    body = {"query": "when is the launch review"}
    status, answer, _ = await world.h.request("POST", "/search/run?botUsername=seeker", user=rae, json_body=body)
    assert status == 200, answer
    assert_matches_openapi("POST", "/search/run", 200, answer)
    posts = world.mm.state.posts
    question = posts[answer["postId"]]
    assert question["channel_id"] == answer["channelId"] and question["message"] == "when is the launch review"
    dm = world.mm.state.channels[answer["channelId"]]
    assert dm["type"] == "D" and sorted(dm["name"].split("__")) == sorted([rae.id, world.bot.id])

    def reply() -> dict[str, Any] | None:
        done = [
            p
            for p in posts.values()
            if p["root_id"] == question["id"] and p["props"].get("agents_stream_status") not in (None, "streaming")
        ]
        return done[0] if done else None

    post = await poll(reply, within=20)
    assert post["user_id"] == world.bot.id and post["props"]["agents_stream_status"] == "done"
    assert post["message"] == "Sid says the launch review is on Thursday afternoon."
    assert [r["postId"] for r in json.loads(post["props"]["search_results"])] == [permitted["id"]]
    asked = json.dumps(world.openai.requests[-1].body)
    assert "moved to thursday afternoon" in asked and "bluebird" not in asked
    # Nothing readable matched: the plugin's answer in the reply, and no model call.
    calls = len(world.openai.requests)
    status, answer, _ = await world.h.request("POST", "/search/run", user=world.user("ned"), json_body=body)
    assert status == 200, answer
    question = posts[answer["postId"]]
    post = await poll(reply, within=20)
    assert "couldn't find" in post["message"] and "search_results" not in post["props"]
    assert len(world.openai.requests) == calls
    # The provider refuses before the answer starts: the route says so, and neither post stays.
    world.openai.enqueue(FakeResponse(status=400, error_body={"error": {"message": "bad request"}}))
    before = {p["id"] for p in posts.values() if not p["delete_at"]}
    status, answer, _ = await world.h.request("POST", "/search/run", user=rae, json_body=body)
    assert status >= 400 and answer["error"], answer
    assert {p["id"] for p in posts.values() if not p["delete_at"]} == before


async def search_durations(world: World) -> dict[str, float]:
    """``agents_search_duration_seconds`` samples of the index's /metrics: name{labels} → value."""
    assert world.h.cluster is not None and world.h.http is not None
    async with world.h.http.get(world.h.cluster.metrics_url("index")) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("agents_search_duration_seconds")
    }


async def test_each_search_is_timed_on_the_index_metrics_without_ids_in_labels(world: World) -> None:
    room = world.channel("timing")
    tao = world.user("tao", room)
    await world.post(tao, room, "the metrics dashboard shows search latency")
    before = await search_durations(world)
    assert await world.found(tao, "search latency dashboard")
    status, _ = await world.raw(tao, query="")  # refused before any scan: timed as an error
    assert status == 400
    after = await search_durations(world)
    counts = {k: v - before.get(k, 0) for k, v in after.items() if "_count" in k}
    assert counts["agents_search_duration_seconds_count[('scan', 'exact')]"] == 1, counts
    assert counts["agents_search_duration_seconds_count[('scan', 'error')]"] == 1, counts
    assert after["agents_search_duration_seconds_sum[('scan', 'exact')]"] > before.get(
        "agents_search_duration_seconds_sum[('scan', 'exact')]", 0
    )
    assert not [k for k in after if room.id in k or tao.id in k or world.team.id in k]


async def test_ai_bots_reports_search_enabled_while_it_works(world: World) -> None:
    status, body = await world.h.get("/ai_bots", user=world.admin)
    assert status == 200 and body["searchEnabled"] is True


async def test_an_embedding_provider_outside_the_allowed_upstream_hostnames_is_never_contacted(world: World) -> None:
    burrows = world.channel("burrows")
    quinn = world.user("quinn", burrows)
    await world.post(quinn, burrows, "wombats dig burrows")  # a search with no readable channel embeds nothing
    status, saved, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert status == 200

    async def allow(hostnames: str) -> None:
        changed = {**saved, "allowedUpstreamHostnames": hostnames}
        status, answer, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=changed)
        assert status == 200, answer

    await allow("api.openai.com")
    calls = len(world.embed.calls)

    seen: list[Any] = []

    async def refused() -> Any:
        seen[:] = await world.raw(quinn, query="wombat burrows")
        return seen if seen[0] == 403 else None

    status, answer = await poll(refused, message=lambda: f"the embedding provider was still allowed: {seen}")
    assert "allowedUpstreamHostnames" in answer["error"] and "127.0.0.1" not in answer["error"]
    assert len(world.embed.calls) == calls
    await allow("")

    async def served() -> bool:
        return (await world.raw(quinn, query="wombat burrows"))[0] == 200

    await poll(served, message="search did not come back once every host was allowed")


async def test_a_model_change_stops_search_until_a_reindex(world: World) -> None:
    """Runs last in the module: it leaves the index needing a reindex."""
    lee = world.user("lee")
    status, saved, _ = await world.h.request("GET", "/admin/config", user=world.admin)
    assert status == 200
    changed = {**saved, "embeddingSearchConfig": world.embed.search_config(32)}
    status, answer, _ = await world.h.request("PUT", "/admin/config", user=world.admin, json_body=changed)
    assert status == 200, answer

    async def refused() -> bool:
        status, answer = await world.raw(lee, query="numbat census")
        return status == 503 and "reindex" in answer["error"]

    await poll(refused, message="search kept answering after the model changed")
    status, body = await world.h.get("/ai_bots", user=world.admin)
    assert body["searchEnabled"] is False
    with pytest.raises(grpc.aio.AioRpcError) as refused_index:
        await world.index_posts(index_pb2.Post(id="x" * 26, channel_id="c" * 26, user_id="u" * 26, message="new"))
    assert refused_index.value.code() == grpc.StatusCode.FAILED_PRECONDITION
