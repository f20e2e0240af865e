"""A failing test does not poison the next one: what it scripted and never used (a queued LLM
answer, an injected Mattermost failure, a queued provider reply) is dropped after it, so the next
test sharing the module's fakes gets what it would get alone."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# Two tests sharing module-scoped fakes, run by an inner pytest with the integration conftest's
# fixture: the first queues answers and fails, the second asks each fake once.
SUITE = """
import aiohttp
import pytest_asyncio

from tests.fakes.mattermost import FakeMattermost
from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_script import DEFAULT_ANSWER, FakeResponse
from tests.fakes.scripted import Reply, ScriptedServer


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fakes():
    scripted = ScriptedServer(lambda request: Reply(chunks=(b"fallback",), content_type="text/plain"))
    await scripted.start()
    async with FakeOpenAI() as openai, FakeMattermost() as mattermost:
        yield openai, mattermost, scripted
    await scripted.close()


async def test_fails_before_its_scripted_answers_are_asked_for(fakes):
    openai, mattermost, scripted = fakes
    openai.enqueue(FakeResponse.text("left over", tokens=1))
    mattermost.fail_next("/api/v4/", 503)
    scripted.enqueue(Reply(status=500, chunks=(b"left over",)))
    raise AssertionError("failed with answers still queued")


async def test_the_next_test_gets_what_it_would_get_alone(fakes):
    openai, mattermost, scripted = fakes
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {openai.api_key}"}
        async with http.post(f"{openai.base_url}/chat/completions", json=chat, headers=auth) as resp:
            answer = await resp.text()
            assert resp.status == 200 and "left over" not in answer and DEFAULT_ANSWER[:10] in answer
        async with http.get(f"{mattermost.url}/api/v4/system/ping") as resp:
            assert resp.status == 200
        async with http.get(f"{scripted.url}/anything") as resp:
            assert (resp.status, await resp.text()) == (200, "fallback")
"""


def test_answers_a_failed_test_left_queued_do_not_reach_the_next_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\n"
        "asyncio_default_fixture_loop_scope = module\nasyncio_default_test_loop_scope = module\n"
    )
    pytester.makeconftest(
        "from tests.integration.conftest import _fakes_start_unscripted, pytest_runtest_makereport  # noqa: F401\n"
    )
    pytester.makepyfile(test_two_tests=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
