"""MattermostClient and MattermostWebSocket against the fake Mattermost over real loopback HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from services.common.errors import (
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    UpstreamUnavailable,
)
from services.common.mattermost import MattermostClient, MattermostWebSocket, WebSocketEvent
from tests.fakes.mattermost import FakeChannel, FakeMattermost, FakeTeam, FakeUser


@dataclass
class World:
    mm: FakeMattermost
    admin: FakeUser
    alice: FakeUser
    bob: FakeUser
    bot: FakeUser
    team: FakeTeam
    town: FakeChannel
    secret: FakeChannel
    dm: FakeChannel

    def client(self, user: FakeUser, **kwargs: float) -> MattermostClient:
        options = {"retry_initial_wait": 0.001, "retry_max_wait": 0.01, **kwargs}
        return MattermostClient(self.mm.url, user.token, **options)  # type: ignore[arg-type]


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with FakeMattermost() as mm:
        admin = mm.add_user("admin", roles="system_admin system_user")
        alice, bob = mm.add_user("alice"), mm.add_user("bob")
        bot = mm.add_user("ai", is_bot=True)
        team = mm.add_team("eng")
        town = mm.add_channel(team.id, "town-square")
        secret = mm.add_channel(team.id, "secret", type="P")
        for user in (alice, bob, bot):
            mm.add_member(team, user)
            mm.add_member(town, user)
        mm.add_member(secret, alice)
        dm = mm.add_direct_channel(alice, bot)
        yield World(mm, admin, alice, bob, bot, team, town, secret, dm)


async def test_get_me_returns_the_token_owner(world: World) -> None:
    async with world.client(world.admin) as client:
        me = await client.get_me()
    assert (me.id, me.username, me.is_system_admin) == (world.admin.id, "admin", True)


async def test_get_me_with_a_bad_token_raises_unauthenticated_without_the_token(world: World) -> None:
    token = "not-a-real-token-s3cr3t"
    async with MattermostClient(world.mm.url, token) as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.get_me()
        assert token not in str(caught.value) and token not in repr(client)


async def test_users_are_read_by_id_username_ids_and_search(world: World) -> None:
    async with world.client(world.alice) as client:
        assert (await client.get_user(world.bob.id)).username == "bob"
        assert (await client.get_user_by_username("@bob")).id == world.bob.id
        users = await client.get_users_by_ids([world.bob.id, world.bot.id, "nosuchuser"])
        assert {u.username for u in users} == {"bob", "ai"}
        assert next(u for u in users if u.username == "ai").is_bot
        assert [u.username for u in await client.search_users("ali")] == ["alice"]
        assert len(await client.search_users("", limit=2)) == 2
        assert await client.get_users_by_ids([]) == []


async def test_unknown_user_raises_not_found(world: World) -> None:
    async with world.client(world.alice) as client:
        with pytest.raises(NotFound):
            await client.get_user_by_username("nobody")


async def test_an_empty_id_is_not_found_before_any_request_reaches_mattermost(world: World) -> None:
    # "" would make /channels//members/<user>, another route of Mattermost's.
    asked = len(world.mm.requests)
    async with world.client(world.admin) as client:
        assert await client.get_channel_member("", world.alice.id) is None
        assert await client.get_team_member(world.team.id, "") is None
        for read in (client.get_channel, client.get_post, client.get_post_thread, client.get_channel_members):
            with pytest.raises(NotFound, match="''"):
                await read("")
    assert world.mm.requests[asked:] == []


async def test_private_channel_is_forbidden_to_non_members(world: World) -> None:
    async with world.client(world.alice) as alice, world.client(world.bob) as bob:
        assert (await alice.get_channel(world.secret.id)).type == "P"
        with pytest.raises(PermissionDenied):
            await bob.get_channel(world.secret.id)
        with pytest.raises(PermissionDenied):
            await bob.get_channel_posts(world.secret.id)


async def test_channel_member_is_none_when_the_user_is_not_a_member(world: World) -> None:
    async with world.client(world.admin) as client:
        member = await client.get_channel_member(world.secret.id, world.alice.id)
        assert member is not None and member.user_id == world.alice.id
        assert await client.get_channel_member(world.secret.id, world.bob.id) is None


async def test_user_can_read_channel_follows_membership_and_roles(world: World) -> None:
    async with world.client(world.admin) as client:
        assert await client.user_can_read_channel(world.alice.id, world.secret.id)
        assert not await client.user_can_read_channel(world.bob.id, world.secret.id)
        assert await client.user_can_read_channel(world.bob.id, world.town.id)
        assert await client.user_can_read_channel(world.admin.id, world.dm.id)


async def test_teams_memberships_and_channels_of_a_user(world: World) -> None:
    async with world.client(world.alice) as client:
        assert (await client.get_team(world.team.id)).name == "eng"
        member = await client.get_team_member(world.team.id, world.alice.id)
        assert member is not None and member.team_id == world.team.id
        assert await client.get_team_member(world.team.id, world.admin.id) is None
        assert [t.id for t in await client.get_user_teams(world.alice.id)] == [world.team.id]
        names = {c.name for c in await client.get_channels_for_user(world.alice.id, world.team.id)}
        assert names == {"town-square", "secret", world.dm.name}
        with pytest.raises(PermissionDenied):
            await client.get_user_teams(world.bob.id)


async def test_direct_channel_is_created_once(world: World) -> None:
    async with world.client(world.bob) as client:
        first = await client.get_or_create_direct_channel(world.bob.id, world.bot.id)
        again = await client.get_or_create_direct_channel(world.bot.id, world.bob.id)
    assert first.is_direct and first.id == again.id


async def test_posts_replies_and_threads_read_oldest_first(world: World) -> None:
    async with world.client(world.alice) as client:
        root = await client.create_post(world.town.id, "question", props={"k": "v"})
        reply = await client.create_post(world.town.id, "answer", root_id=root.id, type="custom_llmbot")
        assert (root.user_id, root.props, reply.thread_root_id) == (world.alice.id, {"k": "v"}, root.id)
        assert (await client.get_post(reply.id)).type == "custom_llmbot"
        assert [p.id for p in await client.get_post_thread(reply.id)] == [root.id, reply.id]
        with pytest.raises(InvalidInput):
            await client.create_post(world.town.id, "bad", root_id=reply.id)


async def test_channel_posts_page_and_since(world: World) -> None:
    first = world.mm.add_post(world.alice, world.town, "one")
    second = world.mm.add_post(world.alice, world.town, "two")
    third = world.mm.add_post(world.bob, world.town, "three")
    async with world.client(world.bob) as client:
        assert [p.id for p in await client.get_channel_posts(world.town.id)] == [
            first["id"],
            second["id"],
            third["id"],
        ]
        assert [p.id for p in await client.get_channel_posts(world.town.id, page=0, per_page=2)] == [
            second["id"],
            third["id"],
        ]
        since = await client.get_channel_posts(world.town.id, since=first["update_at"])
        assert [p.message for p in since] == ["two", "three"]


async def test_search_finds_only_posts_the_caller_can_read(world: World) -> None:
    world.mm.add_post(world.alice, world.town, "the deploy failed")
    world.mm.add_post(world.alice, world.secret, "the deploy secret")
    async with world.client(world.bob) as bob, world.client(world.alice) as alice:
        assert [p.message for p in await bob.search_posts(world.team.id, "deploy")] == ["the deploy failed"]
        assert len(await alice.search_posts(world.team.id, "deploy")) == 2
        assert len(await alice.search_posts(world.team.id, "deploy secret")) == 1
        assert len(await alice.search_posts(world.team.id, "failed secret", is_or_search=True)) == 2


async def test_patch_and_update_change_the_post_and_others_posts_are_forbidden(world: World) -> None:
    async with world.client(world.bot) as bot, world.client(world.bob) as bob:
        post = await bot.create_post(world.dm.id, "thinking...")
        patched = await bot.patch_post(post.id, message="done", props={"conversation_id": "c1"})
        assert (patched.message, patched.props, patched.edit_at > 0) == (
            "done",
            {"conversation_id": "c1"},
            True,
        )
        updated = await bot.update_post(patched)
        assert updated.message == "done"
        with pytest.raises(PermissionDenied):
            await bob.patch_post(post.id, message="hijack")
        with pytest.raises(PermissionDenied):
            await bob.create_post(world.dm.id, "not a member")


async def test_reaction_is_added_as_the_caller(world: World) -> None:
    post = world.mm.add_post(world.alice, world.town, "nice")
    async with world.client(world.bob) as client:
        reaction = await client.add_reaction(world.bob.id, post["id"], ":thumbsup:")
        assert (reaction.user_id, reaction.emoji_name) == (world.bob.id, "thumbsup")
        with pytest.raises(PermissionDenied):
            await client.add_reaction(world.alice.id, post["id"], "smile")


async def test_files_are_read_with_a_size_cap(world: World) -> None:
    info = world.mm.add_file(world.alice, "notes.txt", b"x" * 1000)
    world.mm.add_post(world.alice, world.secret, "see file", file_ids=[info["id"]])
    async with world.client(world.alice) as alice, world.client(world.bob) as bob:
        read = await alice.get_file_info(info["id"])
        assert (read.name, read.size, read.extension, read.mime_type) == (
            "notes.txt",
            1000,
            "txt",
            "text/plain",
        )
        assert await alice.get_file(info["id"]) == b"x" * 1000
        with pytest.raises(InvalidInput):
            await alice.get_file(info["id"], max_bytes=999)
        with pytest.raises(PermissionDenied):
            await bob.get_file(info["id"])


async def test_the_start_of_a_file_is_read_up_to_the_cap_without_an_error(world: World) -> None:
    # Larger than one 64 KiB read: the cut falls inside a later chunk.
    content = bytes(range(256)) * 1024
    info = world.mm.add_file(world.alice, "big.log", content)
    async with world.client(world.alice) as alice:
        assert await alice.get_file_start(info["id"], 100_000) == content[:100_000]
        assert await alice.get_file_start(info["id"], len(content) + 5) == content


async def test_bot_lifecycle_create_patch_disable_enable(world: World) -> None:
    async with world.client(world.admin) as admin:
        bot = await admin.create_bot("helper", "Helper", "answers")
        assert (bot.username, bot.owner_id, bot.is_enabled) == ("helper", world.admin.id, True)
        patched = await admin.patch_bot(bot.user_id, display_name="Helper 2")
        assert (patched.display_name, patched.description) == ("Helper 2", "answers")
        await admin.set_profile_image(bot.user_id, b"\x89PNG fake", "avatar.png")
        assert world.mm.state.profile_images[bot.user_id] == b"\x89PNG fake"
        token = world.mm.issue_token(bot.user_id)
        async with MattermostClient(world.mm.url, token) as as_bot:
            assert (await as_bot.get_me()).is_bot
            assert not (await admin.disable_bot(bot.user_id)).is_enabled
            with pytest.raises(Unauthenticated):
                await as_bot.get_me()
            assert (await admin.enable_bot(bot.user_id)).is_enabled
            assert (await as_bot.get_me()).username == "helper"
        assert (await admin.get_bot(bot.user_id)).display_name == "Helper 2"
        with pytest.raises(InvalidInput):
            await admin.create_bot("helper")


async def test_only_admins_create_bots(world: World) -> None:
    async with world.client(world.alice) as client:
        with pytest.raises(PermissionDenied):
            await client.create_bot("mine")


async def test_ping_reports_a_healthy_server(world: World) -> None:
    async with world.client(world.alice) as client:
        assert await client.ping()


async def test_get_is_retried_after_server_errors(world: World) -> None:
    world.mm.fail_next("/api/v4/users/me", 503, count=2)
    async with world.client(world.alice) as client:
        assert (await client.get_me()).id == world.alice.id
    assert [r.status for r in world.mm.requests_to("GET", "/api/v4/users/me")] == [503, 503, 200]


async def test_get_gives_up_after_bounded_attempts(world: World) -> None:
    world.mm.fail_next("/api/v4/users/me", 500, count=10)
    async with world.client(world.alice, retry_attempts=3) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.get_me()
    assert len(world.mm.requests_to("GET", "/api/v4/users/me")) == 3


async def test_rate_limit_carries_retry_after_and_is_retried(world: World) -> None:
    world.mm.fail_next("/api/v4/users/me", 429, count=1, retry_after=7)
    async with world.client(world.alice, retry_attempts=1) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_me()
    assert caught.value.retry_after == 7.0
    world.mm.fail_next("/api/v4/users/me", 429, count=1, retry_after=7)
    # Retry-After is capped by retry_max_wait, so this retry waits 10 ms rather than 7 s.
    async with world.client(world.alice, retry_attempts=2) as client:
        assert (await client.get_me()).id == world.alice.id


async def test_create_post_is_not_retried(world: World) -> None:
    world.mm.fail_next("/api/v4/posts", 502, count=1)
    async with world.client(world.alice) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.create_post(world.town.id, "once")
    assert len(world.mm.requests_to("POST", "/api/v4/posts")) == 1
    assert not any(p["message"] == "once" for p in world.mm.state.posts.values())


async def test_connection_refused_is_upstream_unavailable_without_the_token() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "tok-never-printed"
    async with MattermostClient(f"http://127.0.0.1:{port}", token, retry_attempts=2, retry_max_wait=0.01) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get_me()
    assert token not in str(caught.value) and "/users/me" in str(caught.value)


async def test_slow_server_times_out_as_upstream_unavailable() -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/api/v4/users/me", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with MattermostClient(url, "t", timeout=0.1, retry_attempts=1) as client:
            with pytest.raises(UpstreamUnavailable) as caught:
                await client.get_me()
        assert caught.value.timeout
    finally:
        never.set()
        await runner.cleanup()


# --- WebSocket ----------------------------------------------------------------------------------


async def _next(events: AsyncIterator[WebSocketEvent], name: str) -> WebSocketEvent:
    async with asyncio.timeout(5):
        async for event in events:
            if event.event == name:
                return event
    raise AssertionError(f"stream ended before {name!r}")


async def test_websocket_yields_posted_events_with_the_post_decoded(world: World) -> None:
    async with MattermostWebSocket(world.mm.url, world.bot.token, initial_backoff=0.01) as ws:
        events = ws.events()
        hello = await _next(events, "hello")
        assert hello.seq == 0 and hello.broadcast["user_id"] == world.bot.id
        sent = await world.mm.user_posts(world.alice, world.dm, "hi bot")
        posted = await _next(events, "posted")
        assert posted.post is not None and (posted.post.id, posted.post.message) == (sent["id"], "hi bot")
        assert posted.data["channel_type"] == "D" and posted.data["sender_name"] == "@alice"
        assert posted.data["mentions"] == [world.bot.id]
        assert posted.broadcast["channel_id"] == world.dm.id and posted.seq == 1
        async with world.client(world.alice) as alice:
            await alice.patch_post(sent["id"], message="hi bot!")
        edited = await _next(events, "post_edited")
        assert edited.post is not None and edited.post.message == "hi bot!"


async def test_websocket_reconnects_after_the_server_drops_it(world: World) -> None:
    async with MattermostWebSocket(world.mm.url, world.bot.token, initial_backoff=0.01, max_backoff=0.05) as ws:
        events = ws.events()
        await _next(events, "hello")
        assert await world.mm.drop_websockets() == 1
        await _next(events, "hello")
        await world.mm.user_posts(world.alice, world.dm, "still there?")
        posted = await _next(events, "posted")
        assert posted.post is not None and posted.post.message == "still there?"
        assert ws.connections == 2


async def test_websocket_reconnects_when_the_upgrade_fails(world: World) -> None:
    world.mm.fail_next("/api/v4/websocket", 503, count=2)
    async with MattermostWebSocket(world.mm.url, world.bot.token, initial_backoff=0.01, max_backoff=0.02) as ws:
        await _next(ws.events(), "hello")
    assert [r.status for r in world.mm.requests_to("GET", "/api/v4/websocket")][:2] == [503, 503]


async def test_websocket_with_a_bad_token_raises_unauthenticated(world: World) -> None:
    async with MattermostWebSocket(world.mm.url, "bad-token", initial_backoff=0.01) as ws:
        with pytest.raises(Unauthenticated):
            await _next(ws.events(), "hello")


async def test_websocket_aclose_ends_the_iteration(world: World) -> None:
    ws = MattermostWebSocket(world.mm.url, world.bot.token, initial_backoff=0.01)
    events = ws.events()
    await _next(events, "hello")

    async def drain() -> list[WebSocketEvent]:
        return [event async for event in events]

    draining = asyncio.create_task(drain())
    await world.mm.wait_for_websockets(1)
    await ws.aclose()
    async with asyncio.timeout(5):
        assert await draining == []
    assert not ws.connected
