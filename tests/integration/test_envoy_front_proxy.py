"""Real traffic through the real Envoy running the generated configuration: bridge SSE streams
through the front proxy, balanced per request over two gateway replicas, arrive event by event;
one gateway dials the llm service through Envoy's gRPC listener, balanced over two llm replicas."""

from __future__ import annotations

import json
import secrets

import pytest

from services.cluster.supervisor import free_port
from tests.envoy_proxy import EnvoyProxy
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import PLUGIN, ClusterHarness, SessionPostgres, wait_serving
from tests.integration.registry_support import bridge_agent

pytestmark = pytest.mark.asyncio(loop_scope="session")

PLUGIN_ID = "com.example.caller"
BODY = {"posts": [{"role": "user", "message": "Say hello"}]}
STREAMS = 6


async def test_sse_and_grpc_through_envoy_reach_every_replica_unbuffered(postgres: SessionPostgres) -> None:
    secret = secrets.token_hex(32)
    env = {"AGENTS_GATEWAY_BRIDGE_PLUGIN_SECRETS": f"{PLUGIN_ID}={secret}"}
    headers = {"Mattermost-Plugin-ID": PLUGIN_ID, "X-Agents-Plugin-Secret": secret}
    async with FakeOpenAI() as fake, ClusterHarness(postgres, env=env) as h:
        assert h.cluster is not None and h.http is not None
        await bridge_agent(h, fake)
        llm_port = free_port()
        await h.cluster.start_service(
            "llm-2", {**h.cluster.environment(), "AGENTS_LLM_GRPC_PORT": str(llm_port)}, module="llm"
        )
        await wait_serving(llm_port)
        # The first gateway's port is taken; the second one's is free until it starts, after Envoy.
        gateway_port = free_port()
        upstreams = {
            **h.cluster.environment(),
            "AGENTS_ENVOY_GATEWAY_ADDR": f"ipv4:{h.cluster.address('gateway')},127.0.0.1:{gateway_port}",
            "AGENTS_LLM_ADDR": f"ipv4:{h.cluster.address('llm')},127.0.0.1:{llm_port}",
        }
        async with EnvoyProxy(upstreams) as proxy:
            await h.start_gateway(
                "gateway-2",
                port=gateway_port,
                env={
                    "AGENTS_GATEWAY_LISTEN_FOR_POSTS": "false",
                    "AGENTS_LLM_ADDR": proxy.address("llm"),
                    "AGENTS_GRPC_CLIENT_RETRIES": "false",
                },
            )
            await proxy.wait_healthy()
            gateways_before = await proxy.requests_per_host("gateway")
            llms_before = await proxy.requests_per_host("llm")
            url = f"{proxy.front_url}{PLUGIN}/bridge/v1/completion/agent/helper"

            # Each stream's model answer stalls after its first token: the first event must come
            # through while the upstream response is still open, i.e. nothing buffers it.
            for _ in range(STREAMS):
                fake.enqueue(FakeResponse.stalling_after(1, tokens=4))
                async with h.http.post(url, data=json.dumps(BODY), headers=headers) as resp:
                    assert resp.status == 200, await resp.text()
                    assert resp.headers["Content-Type"].startswith("text/event-stream")
                    line = b""
                    while not line.startswith(b"data: "):
                        line = await resp.content.readline()
                    first = json.loads(line[6:])
                    assert first["Type"] == 0 and first["Value"], first
                    assert not resp.content.at_eof()

            gateways = await proxy.requests_per_host("gateway")
            llms = await proxy.requests_per_host("llm")
        sent_gateway = {host: gateways[host] - gateways_before.get(host, 0) for host in gateways}
        sent_llm = {host: llms[host] - llms_before.get(host, 0) for host in llms}
        # Per-request round robin: the streams alternate between the two gateways ...
        assert sorted(sent_gateway.values()) == [STREAMS // 2, STREAMS // 2], sent_gateway
        # ... and the second gateway's gRPC calls alternate between the two llm replicas.
        assert len(sent_llm) == 2 and min(sent_llm.values()) >= 1, sent_llm
