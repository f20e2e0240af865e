"""Three replicas of every service (``make up --replicas 3``'s layout): gRPC calls are balanced
per call over the replicas by the clients' round-robin over every replica's address, HTTP
requests over the gateways by the generated Envoy front proxy; bridge streams through Envoy keep
flowing, like DM conversations, semantic searches through Envoy and remote MCP tool calls, while
one replica of each service is SIGKILLed and while every replica is restarted in turn. No answer is
lost or duplicated, every request either succeeds (with the right result) or fails clearly, and a
restarted replica soon takes its share again.

Load per gRPC replica is what each replica's own trace file records: one server span per call (the
test's own calls are root spans of a method, so the cluster's background calls are not counted);
per gateway, what Envoy's admin interface counts as sent to it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from agents.index.v1 import index_pb2, index_pb2_grpc
from agents.llm.v1 import llm_pb2, llm_pb2_grpc
from agents.mcp.v1 import mcp_pb2, mcp_pb2_grpc
from agents.registry.v1 import registry_pb2, registry_pb2_grpc
from agents.tools.v1 import tools_pb2, tools_pb2_grpc
from google.protobuf import struct_pb2

from services.cluster.supervisor import GRPC_SERVICES, Cluster
from services.common.grpc_client import create_channel, idempotent
from services.common.identity import MANAGE_SYSTEM, Identity
from tests.envoy_proxy import EnvoyProxy
from tests.fakes.embeddings import FakeEmbeddings
from tests.fakes.mattermost.state import FakeUser
from tests.fakes.mcp_remote import FakeMcpServer
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import DEFAULT_ANSWER
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World
from tests.integration.test_semantic_search import DIMENSIONS
from tests.polling import poll

# Fifteen processes started, killed and restarted one by one: about six minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow, pytest.mark.timeout(900)]

Probe = tuple[str, Callable[[], Awaitable[Any]]]  # the method counted (/service/method), one call to it
REPLICAS = 3
ROUND = 30  # calls per service per measured round: 10 per replica when even
PLUGIN_ID = "com.example.load"
ADMIN = Identity(user_id="", permissions=frozenset({MANAGE_SYSTEM}))
BODY = {"posts": [{"role": "user", "message": "Say hello"}]}
NEEDLE = "the kangaroo release ships on friday"  # the one post the searching user can see
# How a tool call that did not succeed may end: a replica down or draining, or the test's deadline passed.
CLEAR_GRPC = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def probes(h: ClusterHarness) -> dict[str, Probe]:
    """Per service, the proto service whose calls are counted and one idempotent call to it,
    made through the clients' own channel (round robin over every replica, their retries)."""
    assert h.cluster is not None
    token = h.cluster.config.service_token
    admin = [(k, v) for k, v in ADMIN.to_metadata() if v]
    stubs: dict[str, Any] = {}
    for service, module, name in (
        ("index", registry_pb2, "Registry"),
        ("llm", llm_pb2, "LLM"),
        ("tools", tools_pb2, "Tools"),
        ("mcp", mcp_pb2, "MCP"),
    ):
        descriptor = module.DESCRIPTOR.services_by_name[name]
        stubs[service] = create_channel(
            h.cluster.target(service), service_token=token, idempotent_methods=idempotent(descriptor)
        )
    registry = registry_pb2_grpc.RegistryStub(stubs["index"])
    llm = llm_pb2_grpc.LLMStub(stubs["llm"])
    tools = tools_pb2_grpc.ToolsStub(stubs["tools"])
    mcp = mcp_pb2_grpc.MCPStub(stubs["mcp"])
    h._probe_channels = stubs  # type: ignore[attr-defined]  # kept alive with the harness
    return {
        "index": (
            "/agents.registry.v1.Registry/ListServices",
            lambda: registry.ListServices(registry_pb2.ListServicesRequest(), metadata=admin),
        ),
        "llm": ("/agents.llm.v1.LLM/ListModels", lambda: llm.ListModels(llm_pb2.ListModelsRequest(), metadata=admin)),
        "tools": (
            "/agents.tools.v1.Tools/ListPolicies",
            lambda: tools.ListPolicies(tools_pb2.ListPoliciesRequest(), metadata=admin),
        ),
        "mcp": (
            "/agents.mcp.v1.MCP/ListServers",
            lambda: mcp.ListServers(mcp_pb2.ListServersRequest(), metadata=admin),
        ),
    }


def served(trace_dir: Path, process: str, method: str) -> int:
    """Calls to ``method`` from outside the cluster that process ``process`` has finished."""
    path = trace_dir / f"{process}.jsonl"
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        if line.strip():
            span = json.loads(line)
            if span["kind"] == "SERVER" and span["name"] == method and not span["parent_id"]:
                count += 1
    return count


async def probe_once(call: Callable[[], Awaitable[Any]]) -> None:
    try:
        await call()
    except grpc.aio.AioRpcError as err:
        # An answer either way (the probes' identity may not be enough): counted is who gave it.
        assert err.code() != grpc.StatusCode.INTERNAL, err


async def spread(cluster: Cluster, trace_dir: Path, service: str, probe: Probe) -> dict[str, int]:
    """One round of ``ROUND`` calls to ``service``: how many each replica served."""
    method, call = probe
    names = cluster.config.processes_of(service)
    before = {n: served(trace_dir, n, method) for n in names}
    for _ in range(ROUND):
        await probe_once(call)

    def counted() -> dict[str, int] | None:
        now = {n: served(trace_dir, n, method) - before[n] for n in names}
        return now if sum(now.values()) >= ROUND else None

    result: dict[str, int] = await poll(counted, within=15, interval=0.1, message=f"{service}: spans missing")
    return result


async def gateway_spread(proxy: EnvoyProxy, http: aiohttp.ClientSession, headers: dict[str, str]) -> dict[str, int]:
    """One round of ``ROUND`` requests through Envoy's front: how many it sent each gateway."""
    before = await proxy.requests_per_host("gateway")
    for _ in range(ROUND):
        async with http.get(f"{proxy.front_url}{PLUGIN}/bridge/v1/agents", headers=headers) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
    after = await proxy.requests_per_host("gateway")
    return {host: after[host] - before.get(host, 0) for host in after}


def even(counts: dict[str, int]) -> bool:
    """Every replica within ±10 % of an even share."""
    share = sum(counts.values()) / len(counts)
    return all(abs(c - share) <= 0.1 * share for c in counts.values())


async def rebalanced(cluster: Cluster, trace_dir: Path, service: str, probe: Probe) -> None:
    """Until a round of calls to ``service`` spreads evenly (60 s at most)."""
    latest: dict[str, int] = {}

    async def balanced() -> bool:
        latest.clear()
        latest.update(await spread(cluster, trace_dir, service, probe))
        return even(latest)

    await poll(balanced, within=60, interval=0.5, message=lambda: f"{service} uneven after restarts: {latest}")


async def gateways_rebalanced(proxy: EnvoyProxy, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    """Until a round through Envoy spreads evenly over the gateways (60 s at most)."""
    latest: dict[str, int] = {}

    async def balanced() -> bool:
        latest.clear()
        latest.update(await gateway_spread(proxy, http, headers))
        return even(latest)

    await poll(balanced, within=60, interval=0.5, message=lambda: f"gateways uneven after restarts: {latest}")


class Remote:
    """Calls to the fake MCP server's ``echo`` tool through the clients' channel to the mcp replicas."""

    def __init__(self, channel: grpc.aio.Channel, origin: str) -> None:
        self.stub = mcp_pb2_grpc.MCPStub(channel)
        self.origin = origin

    async def call(self, user: FakeUser, text: str) -> mcp_pb2.CallToolResponse:
        arguments = struct_pb2.Struct()
        arguments.update({"text": text})
        request = mcp_pb2.CallToolRequest(server_origin=self.origin, tool_name="echo", arguments=arguments)
        metadata = [(k, v) for k, v in Identity(user_id=user.id).to_metadata() if v]
        # The deadline ends a stuck call as DEADLINE_EXCEEDED, an outcome, instead of holding up the test.
        return await self.stub.CallTool(request, metadata=metadata, timeout=60)


def refused(resp: aiohttp.ClientResponse, raw: str) -> str:
    """A non-200 answer through Envoy, checked to be a clear failure: ``http <status>``."""
    assert resp.status in (502, 503, 504), (resp.status, raw)
    if resp.content_type == "application/json":
        assert "error" in json.loads(raw), raw  # the gateway's own refusal
    else:  # Envoy's local reply: its gateway was killed before answering
        assert resp.headers.get("Server") == "envoy", (resp.headers, raw)
    return f"http {resp.status}"


class Load:
    """Bridge completions through Envoy's front proxy, DM conversations with an agent, semantic
    searches through Envoy and remote MCP tool calls through the clients' channel, until stopped;
    each bridge, search and tool-call outcome and each DM kept."""

    def __init__(self, world: World, headers: dict[str, str], bot: FakeUser, front_url: str, mcp: Remote) -> None:
        self.world = world
        self.h = world.h
        self.user = world.mm.add_user("scale-user")
        self.dm = world.mm.add_direct_channel(self.user, bot)
        self.questions: list[str] = []
        self.url = f"{front_url}{PLUGIN}/bridge/v1/completion/agent/helper"
        self.search_url = f"{front_url}{PLUGIN}/search/raw"
        self.headers = headers
        self.mcp = mcp
        self.searcher = world.mm.add_user("scale-searcher")
        self.needle = ""  # the id of the searcher's one visible post, once indexed
        self.outcomes: list[str] = []
        self.searches: list[str] = []
        self.tool_calls: list[str] = []
        self.stopped = asyncio.Event()
        self.running: asyncio.Task[None] | None = None

    async def index_needle(self) -> None:
        """The searcher's one visible post, in a channel of its own, indexed."""
        channel = self.world.town("scale-search", self.searcher)
        post = self.world.mm.add_post(self.searcher, channel, NEEDLE)
        message = index_pb2.Post(
            id=post["id"],
            team_id=channel.team_id,
            channel_id=channel.id,
            user_id=post["user_id"],
            message=NEEDLE,
            create_at=post["create_at"],
        )
        async with self.h.channel("index") as grpc_channel:
            await index_pb2_grpc.IndexStub(grpc_channel).IndexPosts(
                index_pb2.IndexPostsRequest(posts=[message]), metadata=self.h.metadata(), timeout=30
            )
        self.needle = post["id"]

    async def search(self) -> str:
        """``found`` (the searcher's post among the results), or how it failed clearly."""
        assert self.h.http is not None
        headers = {"Authorization": f"Bearer {self.searcher.token}"}
        try:
            # A search stuck for a minute fails the test (a hang is no clear failure).
            timeout = aiohttp.ClientTimeout(total=60)
            async with self.h.http.post(
                self.search_url, json={"query": NEEDLE}, headers=headers, timeout=timeout
            ) as resp:
                raw = (await resp.read()).decode()
                if resp.status != 200:
                    return refused(resp, raw)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            return "connection reset"
        assert self.needle in [r["post_id"] for r in json.loads(raw)["results"]], raw
        return "found"

    async def call_tool(self) -> str:
        """``answered`` (the tool's own answer), or the clear gRPC status it failed with."""
        text = f"call {len(self.tool_calls)}"
        try:
            reply = await self.mcp.call(self.searcher, text)
        except grpc.aio.AioRpcError as err:
            assert err.code() in CLEAR_GRPC, err
            return err.code().name
        assert (reply.content, reply.is_error) == (text, False), reply
        return "answered"

    async def one(self) -> str:
        """``answered`` (the whole answer, once), or how it failed clearly; an assertion otherwise."""
        assert self.h.http is not None
        try:
            async with self.h.http.post(self.url, data=json.dumps(BODY), headers=self.headers) as resp:
                raw = (await resp.read()).decode()
                if resp.status != 200:
                    return refused(resp, raw)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            return "connection reset or stream cut"  # its gateway was killed mid-answer: the client knows
        events = [json.loads(line[6:]) for line in raw.split("\n\n") if line.startswith("data: ")]
        assert events and events[-1]["Type"] == 1, raw  # every stream is ended explicitly
        if any(e["Type"] == 2 for e in events):
            return "error event"
        text = "".join(e["Value"] for e in events if e["Type"] == 0)
        assert text == DEFAULT_ANSWER, text  # not cut short, not repeated
        return "answered"

    async def converse(self) -> None:
        """One DM after another, each once its reply is no longer streaming."""
        while not self.stopped.is_set():
            post = await self.world.mm.user_posts(self.user, self.dm, f"question {len(self.questions)}")
            self.questions.append(post["id"])
            settled = functools.partial(self.settled, post["id"])
            await poll(settled, within=60, message=functools.partial(self.story_of, post["id"]))

    def story_of(self, post_id: str) -> str:
        """What the services logged about a post that got no settled reply (a rare failure under
        restarts must be diagnosable from the CI log alone)."""
        lines = [f"{name}: {line}" for name, logs in self.world.h.logs.items() for line in logs if post_id in line]
        replies = [(r["id"], r["props"].get("agents_stream_status")) for r in self.world.replies_to(post_id)]
        return f"no settled reply to {post_id}; replies {replies}; logged:\n" + "\n".join(lines[-40:])

    def settled(self, post_id: str) -> bool:
        replies = self.world.replies_to(post_id)
        return bool(replies) and replies[0]["props"].get("agents_stream_status") not in (None, "streaming")

    async def run(self, streams: int = 3) -> None:
        async def worker(call: Callable[[], Awaitable[str]], outcomes: list[str]) -> None:
            while not self.stopped.is_set():
                outcomes.append(await call())

        await asyncio.gather(
            self.converse(),
            worker(self.search, self.searches),
            worker(self.call_tool, self.tool_calls),
            *(worker(self.one, self.outcomes) for _ in range(streams)),
        )

    def start(self) -> asyncio.Task[None]:
        """The load, running in the background."""
        self.running = asyncio.create_task(self.run())
        return self.running

    def counts(self) -> tuple[int, int, int]:
        """How many bridge streams, searches and tool calls have ended so far."""
        return (len(self.outcomes), len(self.searches), len(self.tool_calls))

    def progressed(self, seen: tuple[int, int, int], more: int) -> bool:
        """Bridge streams, searches and tool calls have each ended ``more`` times since ``seen``."""
        if self.running is not None and self.running.done():
            self.running.result()  # a worker's failed check is raised here, not left to look like a stall
        return all(n >= s + more for n, s in zip(self.counts(), seen, strict=True))

    def check_conversations(self) -> list[str]:
        """Every DM has exactly one reply, finished: the whole answer once, or a clear failure."""
        statuses = []
        for post_id in self.questions:
            [reply] = self.world.replies_to(post_id)
            status = reply["props"]["agents_stream_status"]
            if status == "done":
                assert reply["message"] == DEFAULT_ANSWER, reply["message"]
            statuses.append(status)
        return statuses


async def test_three_replicas_share_the_load_and_survive_a_kill_and_a_rolling_restart(
    postgres: SessionPostgres, tmp_path: Path
) -> None:
    async with FakeEmbeddings() as embed, FakeMcpServer("scale") as server:
        # Search on with the fake embedder, and one remote MCP server, from the cluster's first start.
        seed = tmp_path / "config.json"
        mcp = {"servers": [{"name": "scale", "enabled": True, "baseURL": server.url}]}
        seed.write_text(json.dumps({"embeddingSearchConfig": embed.search_config(DIMENSIONS), "mcp": mcp}))
        await survive(postgres, tmp_path, seed, server.url)


async def survive(postgres: SessionPostgres, tmp_path: Path, seed: Path, mcp_origin: str) -> None:
    """The scale-out scenario, with search and the MCP server configured by ``seed``."""
    secret = secrets.token_hex(32)
    names = [f"{s}-{k}" if k > 1 else s for s in GRPC_SERVICES for k in range(1, REPLICAS + 1)]
    process_env = {n: {"AGENTS_TRACE_FILE": str(tmp_path / f"{n}.jsonl")} for n in names}
    # Each gateway claims the posts it answers under its own id; a dead one's claims expire fast.
    process_env |= {n: {"AGENTS_GATEWAY_REPLICA_ID": n} for n in ("gateway", "gateway-2", "gateway-3")}
    env = {
        **FAST,
        "AGENTS_INDEX_LICENSE": "enterprise",  # two agents: one for the bridge, one to chat with
        "AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={secret}",
        "AGENTS_GATEWAY_CLAIM_LEASE_SECONDS": "2",
        "AGENTS_GATEWAY_CLAIM_SWEEP_SECONDS": "0.3",
        "AGENTS_INDEX_CONFIG_SEED_FILE": str(seed),
        # The fake embedder and MCP server listen on the loopback address; the operator opens it.
        "AGENTS_INDEX_EMBEDDING_PRIVATE_HOSTNAMES": "127.0.0.1",
        "AGENTS_MCP_PRIVATE_ALLOWED_HOSTNAMES": "127.0.0.1",
    }
    headers = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": secret}
    async with (
        FakeOpenAI() as fake,
        ClusterHarness(postgres, env=env, replicas=REPLICAS, process_env=process_env) as h,
        contextlib.AsyncExitStack() as stack,
    ):
        assert h.cluster is not None and h.http is not None
        cluster = h.cluster
        world = World(h, fake)
        await world.setup()
        await world.agent("helper", sockets=REPLICAS)  # for the bridge
        bot = await world.agent("chatty", sockets=REPLICAS)
        checks = probes(h)
        # The generated Envoy in front of the gateways (its gRPC listeners are unused here).
        proxy = await stack.enter_async_context(
            EnvoyProxy({**cluster.environment(), "AGENTS_ENVOY_GATEWAY_ADDR": cluster.target("gateway")})
        )
        await proxy.wait_healthy()

        # Every replica serves its own metrics (not only the first, whose port the others share).
        for name in [*names, *cluster.config.processes_of("gateway")]:
            async with h.http.get(cluster.metrics_url(name)) as resp:
                assert resp.status == 200 and "agents_" in await resp.text(), name

        # Steady state: every service's calls spread evenly over its three replicas.
        for service, probe in checks.items():
            counts = await spread(cluster, tmp_path, service, probe)
            assert even(counts), (service, counts)
        gateways = await gateway_spread(proxy, h.http, headers)
        assert len(gateways) == REPLICAS and even(gateways), gateways

        remote = Remote(h._probe_channels["mcp"], mcp_origin)  # type: ignore[attr-defined]
        load = Load(world, headers, bot, proxy.front_url, remote)
        await load.index_needle()
        running = load.start()
        await poll(
            lambda: load.progressed((0, 0, 0), 6), within=60, message=lambda: f"no load got through: {load.counts()}"
        )

        # One replica of each service dies at once, mid-load.
        victims = [cluster.config.processes_of(s)[1] for s in (*GRPC_SERVICES, "gateway")]
        for name in victims:
            os.kill(cluster.processes[name].proc.pid, signal.SIGKILL)
        for name in victims:
            await cluster.stop_service(name)  # reaps it
        seen = load.counts()
        await poll(
            lambda: load.progressed(seen, 6), within=60, message=lambda: f"load stopped after the kill: {load.counts()}"
        )
        for service in (*GRPC_SERVICES, "gateway"):
            name = cluster.config.processes_of(service)[1]
            await cluster.start_service(name, cluster.replica_environment(service, name), module=service)
        await cluster.wait_healthy(timeout=120, names=tuple(victims))

        # Rolling restart, load running: each service's replicas in turn drain (SIGTERM) and come
        # back, every service rolling at once as its own Deployment would (one replica down each).
        services = (*GRPC_SERVICES, "gateway")
        for k in range(REPLICAS):
            rolled = {cluster.config.processes_of(s)[k]: s for s in services}
            await asyncio.gather(*(cluster.stop_service(name, grace=15) for name in rolled))
            for name, service in rolled.items():
                await cluster.start_service(name, cluster.replica_environment(service, name), module=service)
            await cluster.wait_healthy(timeout=120, names=tuple(rolled))
        seen = load.counts()
        await poll(
            lambda: load.progressed(seen, 6),
            within=60,
            message=lambda: f"load stopped after the restarts: {load.counts()}",
        )
        load.stopped.set()
        await running

        # Every replica, restarted last, takes its fair share again within 60 s.
        for service, probe in checks.items():
            await rebalanced(cluster, tmp_path, service, probe)
        await gateways_rebalanced(proxy, h.http, headers)

        answered = load.outcomes.count("answered")
        assert answered >= len(load.outcomes) // 2, load.outcomes
        # Every search and tool call ended (found/answered, or a clear failure), most succeeded.
        assert load.searches.count("found") >= len(load.searches) // 2, load.searches
        assert load.tool_calls.count("answered") >= len(load.tool_calls) // 2, load.tool_calls
        statuses = load.check_conversations()
        assert statuses.count("done") >= len(statuses) // 2, statuses
        for channel in h._probe_channels.values():  # type: ignore[attr-defined]
            await channel.close()
