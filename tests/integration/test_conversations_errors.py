"""What a failed turn tells the user in the reply post: the reason and what to do, never a key.

The fake OpenAI answers for real over HTTP (429 with Retry-After) until the llm service's
retries are used up; the assertions read the reply post as Mattermost holds it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import FakeResponse
from tests.harness import ClusterHarness, SessionPostgres
from tests.integration.conversation_support import FAST, World

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The streaming engine's attempts before it gives up on a provider that refuses to start.
ATTEMPTS = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(postgres: SessionPostgres) -> AsyncIterator[World]:
    async with FakeOpenAI() as openai:
        async with ClusterHarness(postgres, env=FAST) as harness:
            w = World(harness, openai)
            await w.setup()
            yield w


async def test_a_dm_rate_limited_past_the_retries_says_so_and_when_to_try_again(world: World) -> None:
    bot = await world.agent("throttled")
    ada = world.mm.add_user("ada-429")
    dm = world.mm.add_direct_channel(ada, bot)
    world.openai.enqueue(*(FakeResponse.rate_limited(retry_after="2") for _ in range(ATTEMPTS)))
    post = await world.mm.user_posts(ada, dm, "hello?")
    reply = await world.answer_to(post, within=30)
    assert reply["props"]["agents_stream_status"] == "interrupted"
    assert world.openai.queued == 0
    message = reply["message"]
    assert message.startswith("Sorry! An error occurred while accessing the LLM: ")
    assert "rate limiting requests; try again in 2 seconds" in message
    assert world.openai.api_key not in message
