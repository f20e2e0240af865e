"""A turn's prompt is trimmed once, with the token counter the llm service uses for the model:
the local o200k file when one is configured (``AGENTS_LLM_O200K_FILE``). Real llm/index
processes, real PostgreSQL, a fake OpenAI upstream, a fake Mattermost.

The o200k file here is a tiny stand-in that tiktoken loads like the real one: every byte is a
token, and runs of "x" up to 4096 long are single tokens, so a long run of "x" costs a handful of
tokens with it and thousands with cl100k (which the service would use without the file)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.fakes.tools_grpc import FakeTools
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.test_conversations_llm import World, collect, done_reason, text_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

# cl100k counts this run of "x" as 25,000 tokens, the stand-in o200k file as 49.
LONG_WORD = "x" * 200_000
INPUT_TOKEN_LIMIT = 20_000


def write_o200k_file(path: Path) -> Path:
    ranks = [bytes([b]) for b in range(256)] + [b"x" * (2**n) for n in range(1, 13)]
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks)))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    o200k = write_o200k_file(tmp_path_factory.mktemp("tokens") / "o200k_base.tiktoken")
    async with FakeOpenAI() as openai:
        tools = await FakeTools().start()
        try:
            env = {"AGENTS_LLM_TOOLS_ADDR": tools.address, "AGENTS_LLM_O200K_FILE": str(o200k)}
            async with ClusterHarness(postgres, env=env) as harness:
                w = World(harness, openai, tools)
                await w.setup()
                w.service_id = await limited_service(w)
                yield w
                await w.channel.close()
        finally:
            await tools.stop()


async def limited_service(world: World) -> str:
    """A service whose gpt-4o model takes INPUT_TOKEN_LIMIT input tokens."""
    service = registry_pb2.ServiceConfig(
        name="limited",
        type="openaicompatible",
        api_key=world.openai.api_key,
        api_url=world.openai.base_url,
        default_model="gpt-4o",
        token_limit=INPUT_TOKEN_LIMIT,
    )
    async with world.h.channel("index") as channel:
        reply = await registry_pb2_grpc.RegistryStub(channel).CreateService(
            registry_pb2.CreateServiceRequest(service=service), metadata=world.md(world.admin, admin=True)
        )
    return reply.service.id


async def test_a_prompt_that_fits_by_the_configured_o200k_count_is_answered(world: World) -> None:
    fay = world.mm.add_user("fay")
    agent = await world.agent("countbot")
    world.openai.enqueue(FakeResponse.text("Counted right."), FakeResponse.text("Title"))
    request, _ = world.dm(fay, agent, LONG_WORD)

    events = await collect(world.conversations.Respond(request, metadata=world.md(fay)))

    assert text_of(events) == "Counted right."
    assert done_reason(events) == llm_pb2.STOP_REASON_END_TURN
