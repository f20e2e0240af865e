"""``allowedUpstreamHostnames`` on a session's requests (LLM providers, embeddings, transcription),
against a real loopback server reached as ``localhost`` or as ``127.0.0.1``: two hosts to list
or leave out, the server counting what reached it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.common.errors import UpstreamUnavailable
from services.common.http import new_client_session
from services.common.http_guard import DestinationRefused, UpstreamAllowlist


class Upstream:
    """A loopback server answering ``/ok`` and redirecting ``/away`` to the same server as ``127.0.0.1``."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.port = 0

    async def ok(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        return web.Response(text="ok")

    async def away(self, request: web.Request) -> web.Response:
        self.paths.append(request.path)
        raise web.HTTPFound(f"http://127.0.0.1:{self.port}/ok")


@contextlib.asynccontextmanager
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    app = web.Application()
    app.add_routes([web.get("/ok", server.ok), web.get("/away", server.away)])
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def fetch(allowlist: UpstreamAllowlist, url: str) -> str:
    async with new_client_session(trust_env=False, middlewares=(allowlist,)) as session:
        async with session.get(url) as response:
            return await response.text()


@pytest.mark.parametrize("allowed", ["", "localhost", "api.openai.com, LocalHost.", "*"])
async def test_a_listed_host_or_an_empty_list_lets_the_request_through(allowed: str) -> None:
    allowlist = UpstreamAllowlist()
    allowlist.update(allowed)
    async with upstream() as server:
        assert await fetch(allowlist, f"http://localhost:{server.port}/ok") == "ok"
    assert server.paths == ["/ok"]


@pytest.mark.parametrize("allowed", ["localhost", "*.localhost", "api.openai.com"])
async def test_a_host_left_out_is_refused_before_anything_is_sent(allowed: str) -> None:
    allowlist = UpstreamAllowlist()
    allowlist.update(allowed)
    async with upstream() as server:
        with pytest.raises(DestinationRefused) as refused:
            await fetch(allowlist, f"http://127.0.0.1:{server.port}/ok")
    assert server.paths == []
    assert "allowedUpstreamHostnames" in refused.value.message
    assert "127.0.0.1" not in refused.value.message


async def test_a_redirect_to_a_host_left_out_is_refused() -> None:
    allowlist = UpstreamAllowlist()
    allowlist.update("localhost")
    async with upstream() as server:
        with pytest.raises(DestinationRefused):
            await fetch(allowlist, f"http://localhost:{server.port}/away")
    assert server.paths == ["/away"]


async def test_a_change_applies_to_the_next_request() -> None:
    allowlist = UpstreamAllowlist()
    allowlist.update("localhost")
    async with upstream() as server:
        url = f"http://127.0.0.1:{server.port}/ok"
        with pytest.raises(DestinationRefused):
            await fetch(allowlist, url)
        allowlist.update("localhost 127.0.0.1")
        assert await fetch(allowlist, url) == "ok"


async def test_nothing_is_sent_before_the_configuration_arrived() -> None:
    allowlist = UpstreamAllowlist(wait_seconds=0.05)
    async with upstream() as server:
        with pytest.raises(UpstreamUnavailable):
            await fetch(allowlist, f"http://localhost:{server.port}/ok")
    assert server.paths == []
