"""The outbound-HTTP guard against real loopback sockets: refusals, pinning, redirects and caps.

Servers bind 127.0.0.1 (and 127.0.0.2) on OS-chosen ports. "Refused before any connection" is
proven by counting accepts on a raw listener; a probe connection acts as a barrier so every accept
that happened before it has been counted. Names other than ``localhost`` go to a fake DNS server
(``FakeDns``) handed to the client as its resolver, the guard's process boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from services.common.errors import ErrorClass, PermissionDenied, UpstreamUnavailable
from services.common.http import new_client_session
from services.common.http_guard import (
    DestinationRefused,
    GuardedConnectorMismatch,
    GuardedHttpClient,
    GuardedResponse,
    OutboundPolicy,
    ResponseTooLarge,
    new_guarded_session,
    parse_allowed_hostnames,
    refusal_reason,
)
from tests.fakes.listener import ConnectionCounter

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeDns:
    """Answers from a table; each answer can be a list of lists to change answers per call."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answers and isinstance(answers[0], list):
            index = min(self.calls.count(host), len(answers)) - 1
            return list(answers[index])
        return [str(a) for a in answers]


@contextlib.asynccontextmanager
async def serve(routes: list[web.RouteDef], host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[int]:
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def counter() -> AsyncIterator[ConnectionCounter]:
    listener = ConnectionCounter()
    await listener.start()
    yield listener
    await listener.close()


async def _text(body: str) -> web.Response:
    return web.Response(text=body)


def _reply(body: str) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return await _text(body)

    return handler


LOCAL_ONLY = OutboundPolicy(private_allowed_hostnames=frozenset({"allowed.test"}))


# -- refusals before any connection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "destination 127.0.0.1 is a loopback address"),
        ("0177.0.0.1", "destination 127.0.0.1 is a loopback address"),
        ("0x7f.1", "destination 127.0.0.1 is a loopback address"),
        ("0x7f000001", "destination 127.0.0.1 is a loopback address"),
        ("127.1", "destination 127.0.0.1 is a loopback address"),
        ("127.0.0.1.", "destination 127.0.0.1 is a loopback address"),
        ("[::ffff:127.0.0.1]", "loopback address (IPv4-mapped 127.0.0.1)"),
        ("[::ffff:7f00:1]", "loopback address (IPv4-mapped 127.0.0.1)"),
        ("[0:0:0:0:0:ffff:7f00:1]", "loopback address (IPv4-mapped 127.0.0.1)"),
        ("[64:ff9b::7f00:1]", "loopback address (NAT64 127.0.0.1)"),
        ("[2002:7f00:1::]", "loopback address (6to4 127.0.0.1)"),
        ("0.0.0.0", "destination 0.0.0.0 is an unspecified address"),
        ("0", "destination 0.0.0.0 is an unspecified address"),
        ("[::]", "destination :: is an unspecified address"),
        ("[::1]", "destination ::1 is a loopback address"),
        ("[fe80::1%25eth0]", "destination fe80::1 is a link-local address"),
        ("169.254.169.254", "destination 169.254.169.254 is a link-local address"),
        ("100.64.0.1", "carrier-grade NAT address"),
        ("10.1.2.3", "destination 10.1.2.3 is a private address"),
    ],
)
async def test_alternative_ip_encodings_are_refused_before_connecting(
    counter: ConnectionCounter, host: str, reason: str
) -> None:
    async with GuardedHttpClient(OutboundPolicy(), resolve_name=FakeDns({})) as client:
        with pytest.raises(PermissionDenied) as refused:
            await client.request("GET", f"http://{host}:{counter.port}/")
    assert reason in refused.value.message
    assert refused.value.error_class is ErrorClass.POLICY
    assert await counter.connections_seen() == 0


@pytest.mark.parametrize(
    "url",
    ["http://%31%32%37.0.0.1/", "http://1.2.3.4.5/", "http://4294967296/", "http://foo.0x1/", "http:///x"],
)
async def test_hosts_no_resolver_reads_the_same_way_are_refused(url: str) -> None:
    async with GuardedHttpClient(OutboundPolicy(), resolve_name=FakeDns({})) as client:
        with pytest.raises(DestinationRefused):
            await client.request("GET", url)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/"])
async def test_schemes_outside_the_policy_are_refused(url: str) -> None:
    async with GuardedHttpClient(OutboundPolicy(), resolve_name=FakeDns({})) as client:
        with pytest.raises(DestinationRefused, match="scheme"):
            await client.request("GET", url)


async def test_name_resolving_to_loopback_is_refused(counter: ConnectionCounter) -> None:
    async with GuardedHttpClient(OutboundPolicy()) as client:
        with pytest.raises(DestinationRefused, match=r"destination localhost \(.*\) is a loopback address"):
            await client.request("GET", f"http://localhost:{counter.port}/")
    assert await counter.connections_seen() == 0


async def test_one_private_address_among_the_answers_refuses_the_name(counter: ConnectionCounter) -> None:
    dns = FakeDns({"mixed.test": ["93.184.216.34", "10.0.0.5"]})
    async with GuardedHttpClient(OutboundPolicy(), resolve_name=dns) as client:
        with pytest.raises(DestinationRefused, match=r"10\.0\.0\.5\) is a private address"):
            await client.request("GET", f"http://mixed.test:{counter.port}/")
    assert await counter.connections_seen() == 0


async def test_allowlist_refuses_hosts_it_does_not_list(counter: ConnectionCounter) -> None:
    policy = OutboundPolicy(
        allowed_hostnames=parse_allowed_hostnames("api.example.com, *.trusted.test"),
        private_allowed_hostnames=frozenset({"*.trusted.test", "elsewhere.test", "trusted.test"}),
    )
    dns = FakeDns({name: ["127.0.0.1"] for name in ("a.trusted.test", "elsewhere.test", "trusted.test")})
    async with (
        serve([web.get("/", _reply("hello"))]) as port,
        GuardedHttpClient(policy, resolve_name=dns) as client,
    ):
        assert (await client.request("GET", f"http://a.trusted.test:{port}/")).body == b"hello"
        for host in ("elsewhere.test", "trusted.test"):
            with pytest.raises(DestinationRefused, match=f"host {host} is not in the allowed upstream"):
                await client.request("GET", f"http://{host}:{counter.port}/")
    assert dns.calls == ["a.trusted.test"]
    assert await counter.connections_seen() == 0


async def test_denied_domains_refuse_the_domain_and_its_subdomains(counter: ConnectionCounter) -> None:
    policy = OutboundPolicy(
        denied_domains=frozenset({"blocked.test"}),
        private_allowed_hostnames=frozenset({"notblocked.test"}),
    )
    dns = FakeDns({"notblocked.test": ["127.0.0.1"]})
    async with (
        serve([web.get("/", _reply("fine"))]) as port,
        GuardedHttpClient(policy, resolve_name=dns) as client,
    ):
        for host in ("blocked.test", "www.blocked.test", "a.b.BLOCKED.test."):
            with pytest.raises(DestinationRefused, match=r"in the denied domain blocked\.test"):
                await client.request("GET", f"http://{host}:{counter.port}/")
        assert (await client.request("GET", f"http://notblocked.test:{port}/")).body == b"fine"
    assert await counter.connections_seen() == 0


@pytest.mark.parametrize("body", [b'{"a": [1.5, 2]}', b'\xef\xbb\xbf{"a": [1.5, 2]}'])
def test_a_json_body_parses_with_or_without_a_byte_order_mark(body: bytes) -> None:
    response = GuardedResponse(200, CIMultiDictProxy(CIMultiDict()), body, "http://upstream")
    assert response.json() == {"a": [1.5, 2]}


@pytest.mark.parametrize("body", [b"NaN", b'"\\ud800"', b"\xff", b"", b'{"a": 1'])
def test_a_body_that_is_not_json_raises_value_error(body: bytes) -> None:
    response = GuardedResponse(200, CIMultiDictProxy(CIMultiDict()), body, "http://upstream")
    with pytest.raises(ValueError):
        response.json()


def test_parse_allowed_hostnames_splits_on_commas_spaces_and_newlines() -> None:
    parsed = parse_allowed_hostnames(" API.example.com,files.example.com.\n*.mcp.test  0x7f.1 ,, ")
    assert parsed == frozenset({"api.example.com", "files.example.com", "*.mcp.test", "127.0.0.1"})
    assert parse_allowed_hostnames("") == frozenset()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("224.0.0.1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("::ffff:0:7f00:1", "a reserved address"),
        ("64:ff9b::a00:1", "a private address (NAT64 10.0.0.1)"),
        ("2002:a00:1::", "a private address (6to4 10.0.0.1)"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
        ("64:ff9b::808:808", None),
    ],
)
def test_refusal_reason_names_each_non_public_range(address: str, reason: str | None) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


# -- admin-allowed private hosts and pinning ---------------------------------------------------


async def test_admin_allowed_private_host_is_reached() -> None:
    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1", "localhost"}))
    async with serve([web.get("/", _reply("private ok"))]) as port, GuardedHttpClient(policy) as client:
        by_name = await client.request("GET", f"http://localhost:{port}/")
        by_address = await client.request("GET", f"http://127.0.0.1:{port}/")
    assert (by_name.status, by_name.body) == (200, b"private ok")
    assert (by_address.status, by_address.body) == (200, b"private ok")


async def test_connection_goes_to_the_checked_address_even_if_dns_rebinds() -> None:
    # The name answers 127.0.0.1 at check time and 127.0.0.2 afterwards; a client that asked DNS
    # again while connecting would land on the 127.0.0.2 listener on the same port.
    async with serve([web.get("/", _reply("checked address"))]) as port:
        rebound = ConnectionCounter()
        await rebound.start("127.0.0.2", port)
        dns = FakeDns({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
        policy = OutboundPolicy(private_allowed_hostnames=frozenset({"rebind.test"}))
        try:
            async with GuardedHttpClient(policy, resolve_name=dns) as client:
                response = await client.request("GET", f"http://rebind.test:{port}/")
            assert response.body == b"checked address"
            assert dns.calls == ["rebind.test"]
            assert await rebound.connections_seen() == 0
        finally:
            await rebound.close()


async def test_guarded_session_cannot_connect_to_a_name_the_guard_did_not_check(
    counter: ConnectionCounter,
) -> None:
    session = new_guarded_session(OutboundPolicy())
    try:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://localhost:{counter.port}/")
    finally:
        await session.close()
    assert await counter.connections_seen() == 0


async def test_session_not_built_for_the_policy_is_rejected() -> None:
    plain = new_client_session(trust_env=False)
    other = new_guarded_session(OutboundPolicy(max_redirects=1))
    try:
        for session in (plain, other):
            with pytest.raises(GuardedConnectorMismatch):
                GuardedHttpClient(OutboundPolicy(), session)
    finally:
        await plain.close()
        await other.close()


# -- redirects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["127.0.0.1", "2130706433", "localhost", "[::ffff:127.0.0.1]"])
async def test_redirect_to_loopback_is_refused_and_its_target_never_connected(
    counter: ConnectionCounter, target: str
) -> None:
    hits: list[str] = []

    async def redirect(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        raise web.HTTPFound(f"http://{target}:{counter.port}/internal")

    dns_table: dict[str, list[str] | list[list[str]]] = {
        "allowed.test": ["127.0.0.1"],
        "localhost": ["127.0.0.1", "::1"],
    }

    async with (
        serve([web.get("/", redirect)]) as port,
        GuardedHttpClient(LOCAL_ONLY, resolve_name=FakeDns(dns_table)) as client,
    ):
        with pytest.raises(DestinationRefused, match="is a loopback address"):
            await client.request("GET", f"http://allowed.test:{port}/")
    assert hits == ["/"]
    assert await counter.connections_seen() == 0


async def test_relative_redirect_is_rechecked_and_followed() -> None:
    dns = FakeDns({"allowed.test": ["127.0.0.1"]})

    async def start(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPMovedPermanently("../final?x=1")

    async with (
        serve([web.get("/a/start", start), web.get("/final", _reply("landed"))]) as port,
        GuardedHttpClient(LOCAL_ONLY, resolve_name=dns) as client,
    ):
        response = await client.request("GET", f"http://allowed.test:{port}/a/start")
    assert (response.status, response.body) == (200, b"landed")
    assert response.url == f"http://allowed.test:{port}/final?x=1"
    assert dns.calls == ["allowed.test", "allowed.test"]


async def test_redirect_chain_longer_than_max_redirects_is_refused() -> None:
    hits: list[str] = []

    async def loop(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        raise web.HTTPFound("/loop")

    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"allowed.test"}), max_redirects=2)
    async with (
        serve([web.get("/loop", loop)]) as port,
        GuardedHttpClient(policy, resolve_name=FakeDns({"allowed.test": ["127.0.0.1"]})) as client,
    ):
        with pytest.raises(DestinationRefused, match="more than 2 redirects"):
            await client.request("GET", f"http://allowed.test:{port}/loop")
    assert len(hits) == 3


async def test_cross_origin_redirect_drops_credentials_and_303_turns_post_into_get() -> None:
    seen: list[tuple[str, str | None]] = []
    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"allowed.test", "other.test"}))
    dns = FakeDns({"allowed.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.headers.get("Authorization")))
        return await _text("done")

    async with serve([web.get("/final", record)]) as target_port:

        async def start(request: web.Request) -> web.StreamResponse:
            seen.append((request.method, request.headers.get("Authorization")))
            raise web.HTTPSeeOther(f"http://other.test:{target_port}/final")

        async with (
            serve([web.post("/start", start)]) as port,
            GuardedHttpClient(policy, resolve_name=dns) as client,
        ):
            response = await client.request(
                "POST", f"http://allowed.test:{port}/start", headers={"Authorization": "Bearer t"}, json={}
            )
    assert response.body == b"done"
    assert seen == [("POST", "Bearer t"), ("GET", None)]


# -- size and time caps ------------------------------------------------------------------------


async def test_gzip_bomb_stops_at_the_decompressed_size_cap() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    assert len(bomb) < 64 * 1024

    async def serve_bomb(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"allowed.test"}), max_response_bytes=1024**2)
    async with (
        serve([web.get("/", serve_bomb)]) as port,
        GuardedHttpClient(policy, resolve_name=FakeDns({"allowed.test": ["127.0.0.1"]})) as client,
    ):
        with pytest.raises(ResponseTooLarge) as too_large:
            await client.request("GET", f"http://allowed.test:{port}/")
    assert too_large.value.limit == 1024**2
    assert too_large.value.error_class is ErrorClass.POLICY


async def test_declared_length_past_the_cap_is_refused_before_reading() -> None:
    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}), max_response_bytes=10)
    async with serve([web.get("/", _reply("x" * 11))]) as port, GuardedHttpClient(policy) as client:
        with pytest.raises(ResponseTooLarge):
            await client.request("GET", f"http://127.0.0.1:{port}/")
        with pytest.raises(ResponseTooLarge):
            async with client.stream("GET", f"http://127.0.0.1:{port}/"):
                pass


@pytest.fixture
async def stalled() -> AsyncIterator[asyncio.Event]:
    """Released at teardown so stalled handlers end and the server shuts down at once."""
    release = asyncio.Event()
    yield release
    release.set()


async def test_slow_server_hits_the_total_timeout(stalled: asyncio.Event) -> None:
    async def never_answers(_request: web.Request) -> web.StreamResponse:
        await stalled.wait()
        return await _text("too late")

    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}), total_timeout=0.2)
    async with serve([web.get("/", never_answers)]) as port, GuardedHttpClient(policy) as client:
        with pytest.raises(UpstreamUnavailable, match="timed out") as timed_out:
            await client.request("GET", f"http://127.0.0.1:{port}/")
        stalled.set()
    assert timed_out.value.timeout is True


async def test_stream_that_goes_silent_hits_the_read_timeout(stalled: asyncio.Event) -> None:
    async def one_event_then_silence(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: first\n\n")
        await stalled.wait()
        return response

    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}), read_timeout=0.2)
    async with serve([web.get("/", one_event_then_silence)]) as port, GuardedHttpClient(policy) as client:
        lines: list[bytes] = []
        with pytest.raises(UpstreamUnavailable) as timed_out:
            async with client.stream("GET", f"http://127.0.0.1:{port}/") as stream:
                async for line in stream.iter_lines():
                    lines.append(line)
        stalled.set()
    assert lines == [b"data: first", b""]
    assert timed_out.value.timeout is True


async def test_stream_yields_lines_and_stops_at_the_cap() -> None:
    async def endless_events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while True:
                await response.write(b"data: tick\r\n\r\n")
        return response

    policy = OutboundPolicy(private_allowed_hostnames=frozenset({"127.0.0.1"}))
    async with serve([web.get("/", endless_events)]) as port, GuardedHttpClient(policy) as client:
        lines: list[bytes] = []
        with pytest.raises(ResponseTooLarge):
            async with client.stream("GET", f"http://127.0.0.1:{port}/", max_bytes=1000) as stream:
                assert stream.status == 200
                async for line in stream.iter_lines():
                    lines.append(line)
    assert lines[:2] == [b"data: tick", b""]
    assert sum(len(line) + len(b"\r\n") for line in lines) <= 1000 + len(b"\r\n")
