"""The tools service through gRPC against real processes, a fake Mattermost and fake search APIs.

The fake search server listens on 127.0.0.2, which the operator allows to resolve privately
(``AGENTS_TOOLS_PRIVATE_ALLOWED_HOSTNAMES``); SSRF probes aim at a connection counter on 127.0.0.1,
which nothing allows, so "refused before any connection" is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc
from agents.tools.v1 import tools_pb2 as tools_pb2
from agents.tools.v1 import tools_pb2_grpc as tools_pb2_grpc

from tests.fakes.listener import ConnectionCounter
from tests.fakes.search import FakeResult, FakeSearch
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.tools_support import SEARCH_HOST, World, insert_agent, rpc_error

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    counter = ConnectionCounter()
    await counter.start("127.0.0.1")
    async with FakeSearch(host=SEARCH_HOST) as search:
        env = {"AGENTS_TOOLS_PRIVATE_ALLOWED_HOSTNAMES": SEARCH_HOST}
        async with ClusterHarness(postgres, env=env) as h:
            w = World(h, search, counter)
            w.agent_id = await insert_agent(h.database_url, w.bot, autoenablenewmcptools=True)
            await w.configure()
            yield w
    await counter.close()


# --- contract, listing, policies ---------------------------------------------------------------


async def test_every_rpc_of_the_tools_descriptor_is_implemented(world: World) -> None:
    service = tools_pb2.DESCRIPTOR.services_by_name["Tools"]
    async with world.h.channel("tools") as channel:
        stub = tools_pb2_grpc.ToolsStub(channel)
        requests = {
            "ListTools": tools_pb2.ListToolsRequest(context=world.context()),
            "ExecuteTool": tools_pb2.ExecuteToolRequest(context=world.context(), tool_name="no_such_tool"),
            "GetPolicy": tools_pb2.GetPolicyRequest(tool_name="read_post"),
            "SetPolicy": tools_pb2.SetPolicyRequest(policy=tools_pb2.ToolPolicy(tool_name="read_post")),
            "ListPolicies": tools_pb2.ListPoliciesRequest(),
        }
        assert set(requests) == {m.name for m in service.methods}
        for name, request in requests.items():
            try:
                await getattr(stub, name)(request, metadata=world.md(world.alice), timeout=10)
            except grpc.aio.AioRpcError as err:
                assert err.code() != grpc.StatusCode.UNIMPLEMENTED, name


async def test_list_tools_in_a_dm_offers_every_tool_with_its_effective_policy(world: World) -> None:
    tools = {t.name: t for t in await world.list_tools()}
    assert set(tools) >= {"read_post", "read_channel", "search_posts", "create_post", "web_search", "web_fetch"}
    assert tools["read_post"].auto_approved and not tools["read_post"].writes
    assert tools["create_post"].writes and not tools["create_post"].auto_approved
    assert tools["read_post"].input_schema["required"] == ["post_id"]


async def test_execute_of_an_unknown_tool_is_invalid_argument(world: World) -> None:
    err = await rpc_error(world.execute("delete_everything", {}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_arguments_outside_the_schema_are_invalid_argument(world: World) -> None:
    err = await rpc_error(world.execute("read_channel", {"channel_id": world.town.id, "limit": 5000}))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_set_policy_is_refused_to_non_admins(world: World) -> None:
    policy = tools_pb2.ToolPolicy(tool_name="read_post", enabled=False, approval=tools_pb2.APPROVAL_POLICY_DISABLED)
    async with world.h.channel("tools") as channel:
        err = await rpc_error(
            tools_pb2_grpc.ToolsStub(channel).SetPolicy(
                tools_pb2.SetPolicyRequest(policy=policy), metadata=world.md(world.alice)
            )
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_policy_an_admin_disables_hides_the_tool_and_refuses_its_execution(world: World) -> None:
    stub_md = world.md(world.admin, admin=True)
    disabled = tools_pb2.ToolPolicy(tool_name="search_users", enabled=True, approval=tools_pb2.APPROVAL_POLICY_DISABLED)
    async with world.h.channel("tools") as channel:
        stub = tools_pb2_grpc.ToolsStub(channel)
        await stub.SetPolicy(tools_pb2.SetPolicyRequest(policy=disabled), metadata=stub_md)
        try:
            got = await stub.GetPolicy(tools_pb2.GetPolicyRequest(tool_name="search_users"), metadata=stub_md)
            assert got.policy.approval == tools_pb2.APPROVAL_POLICY_DISABLED
            assert "search_users" not in {t.name for t in await world.list_tools()}
            err = await rpc_error(world.execute("search_users", {"term": "ali"}))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            restored = tools_pb2.ToolPolicy(
                tool_name="search_users", enabled=True, approval=tools_pb2.APPROVAL_POLICY_AUTO
            )
            await stub.SetPolicy(tools_pb2.SetPolicyRequest(policy=restored), metadata=stub_md)


async def test_embedded_server_tool_configs_set_the_mattermost_tools_policies(world: World) -> None:
    tool_configs = [
        {"name": "read_channel", "policy": "ask", "enabled": True},
        {"name": "get_team_info", "policy": "auto_run_everywhere", "enabled": True},
        {"name": "search_posts", "policy": "auto_run_in_dm", "enabled": False},
        {"name": "read_post", "policy": "whenever", "enabled": True},  # unknown policy strings mean ask
    ]
    await world.configure(tool_configs=tool_configs)
    try:
        in_dm = {t.name: t for t in await world.list_tools()}
        assert not in_dm["read_channel"].auto_approved and not in_dm["read_post"].auto_approved
        assert in_dm["read_post"].policy.approval == tools_pb2.APPROVAL_POLICY_ASK
        assert "search_posts" not in in_dm
        in_channel = {t.name: t for t in await world.list_tools(channel_id=world.town.id, is_direct_message=False)}
        assert in_channel["get_team_info"].auto_approved and not in_channel["search_users"].auto_approved
        err = await rpc_error(world.execute("search_posts", {"query": "anything"}))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await world.configure()


async def test_a_tool_configs_entry_wins_over_a_stored_policy_until_it_is_removed(world: World) -> None:
    admin_md = world.md(world.admin, admin=True)
    everywhere, default = (
        tools_pb2.ToolPolicy(
            tool_name="get_channel_info", enabled=True, approval=tools_pb2.APPROVAL_POLICY_AUTO, auto_run_scope=scope
        )
        for scope in (tools_pb2.AUTO_RUN_SCOPE_EVERYWHERE, tools_pb2.AUTO_RUN_SCOPE_DM)
    )
    async with world.h.channel("tools") as channel:
        stub = tools_pb2_grpc.ToolsStub(channel)
        await stub.SetPolicy(tools_pb2.SetPolicyRequest(policy=everywhere), metadata=admin_md)
        try:
            await world.configure(tool_configs=[{"name": "get_channel_info", "policy": "ask", "enabled": True}])
            got = await stub.GetPolicy(tools_pb2.GetPolicyRequest(tool_name="get_channel_info"), metadata=admin_md)
            assert got.policy.approval == tools_pb2.APPROVAL_POLICY_ASK
            await world.configure()
            got = await stub.GetPolicy(tools_pb2.GetPolicyRequest(tool_name="get_channel_info"), metadata=admin_md)
            assert got.policy.auto_run_scope == tools_pb2.AUTO_RUN_SCOPE_EVERYWHERE
        finally:
            await world.configure()
            await stub.SetPolicy(tools_pb2.SetPolicyRequest(policy=default), metadata=admin_md)


async def test_set_policy_is_refused_for_a_tool_the_plugin_configuration_lists(world: World) -> None:
    await world.configure(tool_configs=[{"name": "get_team_info", "policy": "ask", "enabled": True}])
    policy = tools_pb2.ToolPolicy(tool_name="get_team_info", enabled=True, approval=tools_pb2.APPROVAL_POLICY_AUTO)
    try:
        async with world.h.channel("tools") as channel:
            err = await rpc_error(
                tools_pb2_grpc.ToolsStub(channel).SetPolicy(
                    tools_pb2.SetPolicyRequest(policy=policy), metadata=world.md(world.admin, admin=True)
                )
            )
    finally:
        await world.configure()
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "tool_configs" in (err.details() or "")


async def test_set_policy_for_an_unknown_tool_is_invalid_argument(world: World) -> None:
    policy = tools_pb2.ToolPolicy(tool_name="nope", enabled=True, approval=tools_pb2.APPROVAL_POLICY_ASK)
    async with world.h.channel("tools") as channel:
        err = await rpc_error(
            tools_pb2_grpc.ToolsStub(channel).SetPolicy(
                tools_pb2.SetPolicyRequest(policy=policy), metadata=world.md(world.admin, admin=True)
            )
        )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_automated_invoker_gets_only_auto_run_everywhere_tools(world: World) -> None:
    assert await world.list_tools(automated_invoker=True) == []


async def test_an_unknown_agent_is_not_found(world: World) -> None:
    err = await rpc_error(world.list_tools(agent_id="0" * 26))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# --- Mattermost tools as the requesting user ----------------------------------------------------


async def test_read_post_returns_the_thread(world: World) -> None:
    mm = world.h.mattermost
    root = mm.add_post(world.bob, world.town, "deploy is on friday")
    mm.add_post(world.alice, world.town, "which friday?", root_id=root["id"])
    result = await world.execute("read_post", {"post_id": root["id"]})
    assert not result.is_error
    assert "deploy is on friday" in result.content and "which friday?" in result.content
    assert "@bob" in result.content


async def test_a_post_in_a_channel_the_user_cannot_read_is_never_returned(world: World) -> None:
    post = world.h.mattermost.add_post(world.bob, world.secret, "acquisition codename bluebird")
    result = await world.execute("read_post", {"post_id": post["id"]})
    assert result.is_error and "bluebird" not in result.content
    channel = await world.execute("read_channel", {"channel_id": world.secret.id})
    assert channel.is_error and "bluebird" not in channel.content


async def test_read_channel_returns_recent_posts_oldest_first(world: World) -> None:
    mm = world.h.mattermost
    channel = mm.add_channel(world.team.id, "releases")
    mm.add_member(channel, world.alice)
    for n in range(3):
        mm.add_post(world.alice, channel, f"release note {n}")
    result = await world.execute("read_channel", {"channel_id": channel.id, "limit": 2})
    assert not result.is_error
    assert "release note 0" not in result.content
    assert result.content.index("release note 1") < result.content.index("release note 2")


async def test_search_posts_keeps_only_posts_from_channels_the_user_can_read(world: World) -> None:
    mm = world.h.mattermost
    mm.add_post(world.bob, world.town, "the quarterly budget is approved")
    mm.add_post(world.bob, world.secret, "the quarterly budget hides a layoff")
    result = await world.execute("search_posts", {"query": "quarterly budget"})
    assert not result.is_error
    assert "approved" in result.content and "layoff" not in result.content
    as_bob = await world.execute(
        "search_posts", {"query": "quarterly budget"}, user=world.bob, channel_id=world.town.id
    )
    assert "layoff" in as_bob.content


async def test_search_users_finds_users_without_emails(world: World) -> None:
    result = await world.execute("search_users", {"term": "bo"})
    assert "@bob" in result.content and "@example.com" not in result.content


async def test_get_channel_info_by_name_only_searches_the_users_channels(world: World) -> None:
    found = await world.execute("get_channel_info", {"channel_name": "town"})
    assert "Town Square" in found.content
    hidden = await world.execute("get_channel_info", {"channel_name": "secret"})
    assert hidden.is_error and "Secret Plans" not in hidden.content


async def test_get_team_info_by_name(world: World) -> None:
    result = await world.execute("get_team_info", {"team_name": "eng"})
    assert not result.is_error and "Engineering" in result.content


async def test_create_post_posts_as_the_cluster_with_props_naming_the_requester(world: World) -> None:
    result = await world.execute("create_post", {"channel_id": world.town.id, "message": "standup moved to 10"})
    assert not result.is_error
    post_id = result.content.split()[2]
    post = world.h.mattermost.post(post_id)
    assert post["message"] == "standup moved to 10"
    assert post["props"]["ai_generated_by"] == world.alice.id
    assert post["props"]["ai_agent_bot_user_id"] == world.bot.id


async def test_create_post_into_a_channel_the_user_is_not_in_fails(world: World) -> None:
    before = len(world.h.mattermost.requests_to("POST", "/api/v4/posts"))
    result = await world.execute("create_post", {"channel_id": world.secret.id, "message": "hi"})
    assert result.is_error
    assert len(world.h.mattermost.requests_to("POST", "/api/v4/posts")) == before


async def test_get_channel_members_lists_a_readable_channels_members_only(world: World) -> None:
    members = await world.execute("get_channel_members", {"channel_id": world.town.id})
    assert not members.is_error and "@alice" in members.content and "@bob" not in members.content
    hidden = await world.execute("get_channel_members", {"channel_id": world.secret.id})
    assert hidden.is_error and "@bob" not in hidden.content


async def test_get_team_members_answers_only_a_member_of_the_team(world: World) -> None:
    members = await world.execute("get_team_members", {"team_id": world.team.id})
    assert not members.is_error and "@alice" in members.content and "@bob" in members.content
    ops = world.h.mattermost.add_team("ops-tools")
    world.h.mattermost.add_member(ops, world.bob)
    refused = await world.execute("get_team_members", {"team_id": ops.id})
    assert refused.is_error and "@bob" not in refused.content


async def test_create_channel_makes_the_user_a_member_of_it_and_refuses_a_foreign_team(world: World) -> None:
    args = {"team_id": world.team.id, "name": "launch-room", "display_name": "Launch Room", "type": "P"}
    result = await world.execute("create_channel", args)
    assert not result.is_error, result.content
    mm = world.h.mattermost
    created = next(c for c in mm.state.channels.values() if c["name"] == "launch-room")
    assert created["type"] == "P" and (created["id"], world.alice.id) in mm.state.channel_members
    ops = mm.add_team("ops-create")
    refused = await world.execute("create_channel", {**args, "team_id": ops.id, "name": "sneaky"})
    assert refused.is_error
    assert not any(c["name"] == "sneaky" for c in mm.state.channels.values())


async def test_create_channel_refuses_a_type_outside_open_and_private(world: World) -> None:
    args = {"team_id": world.team.id, "name": "dm-like", "display_name": "DM", "type": "D"}
    err = await rpc_error(world.execute("create_channel", args))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "type must be one of O, P" in (err.details() or "")


# --- web search ---------------------------------------------------------------------------------


def results(*pairs: tuple[str, str]) -> list[FakeResult]:
    return [FakeResult(title=t, url=u, snippet=f"about {t}") for t, u in pairs]


async def test_brave_search_answers_results_with_citations(world: World) -> None:
    world.search.results["mattermost agents"] = results(
        ("Agents docs", "https://docs.mattermost.com/agents"), ("Blog", "https://mattermost.com/blog/agents")
    )
    result = await world.execute("web_search", {"query": "mattermost agents"})
    assert not result.is_error
    assert [(c.title, c.url) for c in result.citations] == [
        ("Agents docs", "https://docs.mattermost.com/agents"),
        ("Blog", "https://mattermost.com/blog/agents"),
    ]
    call = world.search.calls[-1]
    assert (call.provider, call.query, call.count) == ("brave", "mattermost agents", 5)


async def test_google_search_answers_results_with_citations(world: World) -> None:
    await world.configure(provider="google", google={"resultLimit": 1})
    try:
        world.search.results["grpc health"] = results(("Health", "https://grpc.io/health"), ("Other", "https://x.io"))
        result = await world.execute("web_search", {"query": "grpc health"})
        assert [(c.title, c.url) for c in result.citations] == [("Health", "https://grpc.io/health")]
        call = world.search.calls[-1]
        assert (call.provider, call.engine_id, call.count) == ("google", world.search.google_cx, 1)
    finally:
        await world.configure()


async def test_the_google_key_in_the_query_string_reaches_no_span_and_no_log_line(world: World) -> None:
    key, accepted = f"google-key-{secrets.token_hex(8)}", world.search.google_key
    await world.configure(provider="google", google={"apiKey": key})
    try:
        world.search.google_key = key
        result = await world.execute("web_search", {"query": "grpc health"})
        assert not result.is_error, result.content

        def google_calls(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [s for s in spans if s["kind"] == "CLIENT" and "/customsearch/v1" in json.dumps(s)]

        spans = await world.h.wait_for_spans(lambda spans: bool(google_calls(spans)))
        assert all("key=REDACTED" in json.dumps(s) for s in google_calls(spans))
        assert key not in json.dumps(spans)
        assert not [line for lines in world.h.logs.values() for line in lines if key in line]
    finally:
        world.search.google_key = accepted
        await world.configure()


async def test_a_rejected_api_key_is_a_tool_error_that_does_not_leak_the_key(world: World) -> None:
    await world.configure(brave={"apiKey": "wrong-key-123"})
    try:
        result = await world.execute("web_search", {"query": "anything at all"})
        assert result.is_error and "HTTP 401" in result.content and "wrong-key-123" not in result.content
    finally:
        await world.configure()
    assert not any("wrong-key-123" in line for line in world.h.logs.get("tools", []))


async def test_denylisted_domains_are_filtered_out_of_results(world: World) -> None:
    await world.configure(domainDenylist=["spam.example"])
    try:
        world.search.results["cheap watches"] = results(
            ("Spam", "https://shop.spam.example/watch"), ("Review", "https://reviews.example.org/watches")
        )
        result = await world.execute("web_search", {"query": "cheap watches"})
        assert [c.url for c in result.citations] == ["https://reviews.example.org/watches"]
        assert "spam.example" not in result.content
    finally:
        await world.configure()


async def test_web_fetch_returns_the_text_of_a_result_page_with_a_citation(world: World) -> None:
    url = world.search.page("/guide", "<html><title>Guide</title><body><p>Step one: relax.</p></body></html>")
    world.search.results["fetch guide"] = results(("Guide", url))
    conversation = secrets.token_hex(8)
    await world.execute("web_search", {"query": "fetch guide"}, conversation_id=conversation)
    page = await world.execute("web_fetch", {"url": url}, conversation_id=conversation)
    assert not page.is_error and "Step one: relax." in page.content
    assert [(c.url, c.title) for c in page.citations] == [(url, "Guide")]


async def test_web_fetch_refuses_urls_no_search_returned(world: World) -> None:
    url = world.search.page("/unlisted", "<p>private</p>")
    page = await world.execute("web_fetch", {"url": url})
    assert page.is_error and "private" not in page.content
    assert "/unlisted" not in world.search.page_requests


async def test_web_fetch_refuses_a_redirect_into_a_denylisted_domain(world: World) -> None:
    await world.configure(domainDenylist=["blocked.example"])
    try:
        url = world.search.redirect("/hop", "http://www.blocked.example/landing")
        world.search.results["redirect hop"] = results(("Hop", url))
        conversation = secrets.token_hex(8)
        await world.execute("web_search", {"query": "redirect hop"}, conversation_id=conversation)
        page = await world.execute("web_fetch", {"url": url}, conversation_id=conversation)
        assert page.is_error and "denied domain blocked.example" in page.content
    finally:
        await world.configure()


async def test_the_allowlist_refuses_a_search_api_host_it_does_not_list(world: World) -> None:
    await world.configure(allowed="api.search.brave.com")
    try:
        calls = len(world.search.calls)
        result = await world.execute("web_search", {"query": "allowlisted only"})
        assert result.is_error and "not in the allowed upstream hostnames" in result.content
        assert len(world.search.calls) == calls
    finally:
        await world.configure()


async def test_the_allowlist_refuses_fetching_a_page_on_a_host_it_does_not_list(world: World) -> None:
    await world.configure(allowed=f"{SEARCH_HOST}")
    try:
        world.search.results["elsewhere page"] = results(("Elsewhere", "https://elsewhere.example/page"))
        conversation = secrets.token_hex(8)
        found = await world.execute("web_search", {"query": "elsewhere page"}, conversation_id=conversation)
        assert not found.is_error
        page = await world.execute("web_fetch", {"url": "https://elsewhere.example/page"}, conversation_id=conversation)
        assert page.is_error and "not in the allowed upstream hostnames" in page.content
    finally:
        await world.configure()


async def test_ssrf_urls_in_results_are_refused_before_any_connection(world: World) -> None:
    port = world.counter.port
    hostile = [
        f"http://2130706433:{port}/",  # decimal
        f"http://0177.0.0.1:{port}/",  # octal
        f"http://0x7f.1:{port}/",  # hex, short form
        f"http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
        f"http://0.0.0.0:{port}/",
        f"http://localhost:{port}/",  # a name that resolves to loopback
        world.search.redirect("/to-loopback", f"http://127.0.0.1:{port}/"),
    ]
    world.search.results["internal admin"] = results(*((f"r{n}", u) for n, u in enumerate(hostile)))
    await world.configure(brave={"resultLimit": 10})
    try:
        conversation = secrets.token_hex(8)
        found = await world.execute("web_search", {"query": "internal admin"}, conversation_id=conversation)
        assert len(found.citations) == len(hostile)
        for url in hostile:
            page = await world.execute("web_fetch", {"url": url}, conversation_id=conversation)
            assert page.is_error and "refused" in page.content, url
        assert await world.counter.connections_seen() == 0
    finally:
        await world.configure()


async def test_a_search_api_url_pointing_at_loopback_is_refused_before_connecting(world: World) -> None:
    await world.configure(brave={"apiURL": f"http://2130706433:{world.counter.port}/res/v1/web/search"})
    try:
        result = await world.execute("web_search", {"query": "loopback api"})
        assert result.is_error and "loopback" in result.content
        assert await world.counter.connections_seen() == 0
    finally:
        await world.configure()


async def test_search_limits_hold_across_a_tools_service_restart(world: World) -> None:
    conversation = secrets.token_hex(8)
    first = await world.execute("web_search", {"query": "limit one"}, conversation_id=conversation)
    second = await world.execute("web_search", {"query": "limit two"}, conversation_id=conversation)
    assert not first.is_error and not second.is_error

    cluster = world.h.cluster
    assert cluster is not None
    await cluster.stop_service("tools")
    await cluster.start_service("tools")
    await cluster.wait_healthy(names=("tools",))

    calls = len(world.search.calls)
    repeat = await world.execute("web_search", {"query": "  LIMIT   two "}, conversation_id=conversation)
    assert repeat.is_error and "already searched" in repeat.content
    third = await world.execute("web_search", {"query": "limit three"}, conversation_id=conversation)
    assert not third.is_error
    err = await rpc_error(world.execute("web_search", {"query": "limit four"}, conversation_id=conversation))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert [c.query for c in world.search.calls[calls:]] == ["limit three"]


async def test_concurrent_searches_never_pass_the_limit(world: World) -> None:
    conversation = secrets.token_hex(8)
    outcomes = await asyncio.gather(
        *(world.execute("web_search", {"query": f"race {n}"}, conversation_id=conversation) for n in range(6)),
        return_exceptions=True,
    )
    ran = [o for o in outcomes if isinstance(o, tools_pb2.ExecuteToolResponse) and not o.is_error]
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(ran) == 3 and len(refused) == 3
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused)


async def test_a_retried_tool_call_is_not_counted_twice(world: World) -> None:
    conversation = secrets.token_hex(8)
    for _ in range(2):
        result = await world.execute("web_search", {"query": "retry me"}, conversation_id=conversation, call_id="c1")
        assert not result.is_error
    await world.execute("web_search", {"query": "retry two"}, conversation_id=conversation)
    last = await world.execute("web_search", {"query": "retry three"}, conversation_id=conversation)
    assert not last.is_error


# --- tracing ------------------------------------------------------------------------------------


async def test_execution_records_a_resolve_tool_span_with_tool_name_and_id(world: World) -> None:
    call_id = f"call_{secrets.token_hex(4)}"
    await world.execute("web_search", {"query": "span check"}, call_id=call_id)

    def found(spans: list[dict[str, Any]]) -> bool:
        return any(s["name"] == "resolve tool" and s["attributes"].get("agents.tool.id") == call_id for s in spans)

    spans = await world.h.wait_for_spans(found)
    resolve = next(s for s in spans if s["name"] == "resolve tool" and s["attributes"]["agents.tool.id"] == call_id)
    assert resolve["service"] == "tools"
    assert resolve["attributes"]["agents.tool.name"] == "web_search"
    children = [s for s in spans if s["parent_id"] == resolve["span_id"]]
    assert any(s["name"] == "brave web search" for s in children)
    assert not any("brave-test-key" in json.dumps(s) for s in spans)
