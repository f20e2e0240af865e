"""Per-user sessions with remote MCP servers over streamable HTTP, through the official SDK.

One session per (user, server): opened (``initialize``) on first use, reused by every later call,
closed once idle for the configured timeout, when the server's configuration changes, or when a
call on it times out (a hung server must not hold a session that every next call waits on). Each
session lives in its own task, because the SDK's client must be entered and left in one task;
calls from other tasks go through it. Sessions of one user or one server never wait on another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, Implementation, Tool

from services.common.errors import DomainError, PermissionDenied, QuotaExceeded, Unauthenticated, UpstreamUnavailable
from services.common.http_guard import DestinationRefused, OutboundPolicy, ResolveName, resolve_with_system
from services.mcp.config import RemoteServer
from services.mcp.outbound import GuardedTransport

logger = logging.getLogger(__name__)

CLIENT_INFO = Implementation(name="mattermost-agents-cluster", version="0.1.0")
# A closing session says goodbye to its server (DELETE); a hung server gets this long for it.
CLOSE_GRACE_SECONDS = 2.0

Key = tuple[str, str]


@dataclass(frozen=True)
class SessionLimits:
    """Caps and deadlines of the remote sessions (deployment settings)."""

    max_per_node: int = 1000
    max_per_user: int = 20
    connect_timeout: float = 10.0


@dataclass(eq=False)
class _Session:
    key: Key
    server: RemoteServer
    stop: asyncio.Event
    task: asyncio.Task[None]
    transport: GuardedTransport
    client: Client | None = None
    last_used: float = 0.0
    in_flight: int = 0
    tools: list[Tool] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.client is not None and not self.task.done() and not self.stop.is_set()


class SessionManager:
    """Opens, reuses, caps and closes the sessions; ``policy`` is the current outbound policy."""

    def __init__(
        self,
        limits: SessionLimits,
        policy: Callable[[], OutboundPolicy],
        *,
        clock: Callable[[], float] = time.monotonic,
        resolve_name: ResolveName = resolve_with_system,
        auth: Callable[[str, RemoteServer], httpx2.Auth | None] = lambda user_id, server: None,
    ) -> None:
        self._limits = limits
        self._auth = auth
        self._policy = policy
        self._clock = clock
        self._resolve_name = resolve_name
        self._sessions: dict[Key, _Session] = {}
        self._opening: dict[Key, asyncio.Future[_Session]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    async def list_tools(self, user_id: str, server: RemoteServer, timeout: float) -> list[Tool]:
        """The server's tools, as listed once per session (until ``clear_tools``)."""
        async with self._use(user_id, server, timeout) as session:
            if session.tools is None:
                assert session.client is not None
                tools: list[Tool] = []
                cursor: str | None = None
                while True:
                    page = await asyncio.wait_for(session.client.list_tools(cursor=cursor), timeout)
                    tools += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        break
                session.tools = tools
            return session.tools

    async def call_tool(
        self, user_id: str, server: RemoteServer, name: str, arguments: dict[str, Any], timeout: float
    ) -> CallToolResult:
        """Call ``name`` as the user; UpstreamUnavailable (timeout) past ``timeout`` seconds."""
        async with self._use(user_id, server, timeout) as session:
            assert session.client is not None
            return await asyncio.wait_for(session.client.call_tool(name, arguments), timeout)

    def clear_tools(self) -> int:
        """Forget every listed tool set; returns how many servers had one."""
        cleared = {s.server.name for s in self._sessions.values() if s.tools is not None}
        for session in self._sessions.values():
            session.tools = None
        return len(cleared)

    def close_idle(self, idle_timeout: float) -> int:
        """Close the sessions unused for ``idle_timeout`` seconds; returns how many."""
        now = self._clock()
        idle = [s for s in self._sessions.values() if s.in_flight == 0 and now - s.last_used >= idle_timeout]
        for session in idle:
            self._discard(session)
        return len(idle)

    def close_where(self, stale: Callable[[RemoteServer], bool]) -> None:
        """Close the sessions whose server configuration ``stale`` rejects (changed or removed)."""
        for session in [s for s in self._sessions.values() if stale(s.server)]:
            self._discard(session)

    def close_session(self, user_id: str, server_name: str) -> None:
        """Close the user's session with the server (its grant changed: its state and tools are stale)."""
        session = self._sessions.get((user_id, server_name))
        if session is not None:
            self._discard(session)

    async def close(self) -> None:
        """Close every session and wait (boundedly) for each to end."""
        for session in list(self._sessions.values()):
            self._discard(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _use(self, user_id: str, server: RemoteServer, timeout: float) -> AsyncIterator[_Session]:
        session = await self._session((user_id, server.name), server, min(timeout, self._limits.connect_timeout))
        session.in_flight += 1
        try:
            with translated(server):
                try:
                    yield session
                except MCPError:
                    _raise_if_refused(session.transport, server)
                    raise  # the server answered (with an error): the session is fine
                except Exception:
                    # The server hung or the connection broke: the next call starts a fresh session.
                    self._discard(session)
                    raise
        finally:
            session.in_flight -= 1
            session.last_used = self._clock()

    async def _session(self, key: Key, server: RemoteServer, timeout: float) -> _Session:
        existing = self._sessions.get(key)
        if existing is not None and existing.alive and existing.server == server:
            return existing
        if existing is not None:
            self._discard(existing)
        pending = self._opening.get(key)
        if pending is not None:
            # Another call of this user is opening the same session: share its one initialize.
            return await asyncio.shield(pending)
        future: asyncio.Future[_Session] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        try:
            self._make_room(key[0])
            with translated(server):
                session = await self._open(key, server, timeout)
            self._sessions[key] = session
            future.set_result(session)
            return session
        except BaseException as exc:
            # A caller that went away must not look like a cancellation to those sharing its open.
            shared = (
                exc if isinstance(exc, Exception) else UpstreamUnavailable("session opening interrupted", retry_after=1)
            )
            future.set_exception(shared)
            future.exception()  # retrieved: no waiter is fine
            raise
        finally:
            del self._opening[key]

    def _make_room(self, user_id: str) -> None:
        """Evict the least recently used idle session of the user, or of the node, when at a cap."""
        for scope, cap, what in (
            ([s for s in self._sessions.values() if s.key[0] == user_id], self._limits.max_per_user, "for one user"),
            (list(self._sessions.values()), self._limits.max_per_node, "on this node"),
        ):
            if len(scope) < cap:
                continue
            idle = [s for s in scope if s.in_flight == 0]
            if not idle:
                raise QuotaExceeded(f"too many open MCP connections {what} ({cap}); retry shortly", retry_after=1)
            self._discard(min(idle, key=lambda s: s.last_used))

    async def _open(self, key: Key, server: RemoteServer, timeout: float) -> _Session:
        stop = asyncio.Event()
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        transport = GuardedTransport(self._policy, self._resolve_name)
        auth = self._auth(key[0], server)
        task = asyncio.create_task(self._run(server, transport, auth, stop, ready), name=f"mcp-session-{server.name}")
        session = _Session(key, server, stop, task, transport, last_used=self._clock())
        try:
            session.client = await asyncio.wait_for(asyncio.shield(ready), timeout)
        except Exception:
            self._discard(session)
            _raise_if_refused(transport, server)
            raise
        except BaseException:
            self._discard(session)
            raise
        logger.info("MCP session opened", extra={"mcp_server": server.name})
        return session

    async def _run(
        self,
        server: RemoteServer,
        transport: GuardedTransport,
        auth: httpx2.Auth | None,
        stop: asyncio.Event,
        ready: asyncio.Future[Client],
    ) -> None:
        """The session's task: enter the SDK client, hand it over, hold it until told to stop."""
        try:
            async with (
                httpx2.AsyncClient(
                    transport=transport,
                    headers=dict(server.headers),
                    auth=auth,
                    timeout=httpx2.Timeout(None, connect=self._limits.connect_timeout),
                    follow_redirects=False,
                ) as http,
                Client(streamable_http_client(server.base_url, http_client=http), client_info=CLIENT_INFO) as client,
            ):
                ready.set_result(client)
                await stop.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                logger.info("MCP session ended: %s", type(exc).__name__, extra={"mcp_server": server.name})

    def _discard(self, session: _Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        if session.stop.is_set():
            return
        session.stop.set()
        closing = asyncio.create_task(self._finish(session))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _finish(self, session: _Session) -> None:
        """Let the session close politely, then cut it: a hung server cannot hold the task."""
        done, _ = await asyncio.wait({session.task}, timeout=CLOSE_GRACE_SECONDS)
        if not done:
            session.task.cancel()
            await asyncio.wait({session.task})


def _raise_if_refused(transport: GuardedTransport, server: RemoteServer) -> None:
    """Unauthenticated when the server's latest answer was 401: the user must connect first."""
    if transport.challenge is not None:
        raise Unauthenticated(f"MCP server {server.name} requires authorization")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, the groups' members and the causes under it, depth first."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


@contextlib.contextmanager
def translated(server: RemoteServer) -> Iterator[None]:
    """SDK and HTTP failures as domain errors whose messages name no address or secret."""
    try:
        yield
    except DomainError as exc:
        raise _domain_error(server, exc) from None
    except MCPError:
        raise
    except Exception as exc:
        raise _domain_error(server, exc) from None


def _domain_error(server: RemoteServer, exc: BaseException) -> DomainError:
    for cause in _causes(exc):
        if isinstance(cause, DestinationRefused):
            # The reason names resolved addresses: it stays out of answers and logs alike.
            logger.warning("MCP server refused by the outbound policy", extra={"mcp_server": server.name})
            return PermissionDenied(f"MCP server {server.name}: its address is not allowed by the outbound policy")
        if isinstance(cause, TimeoutError | httpx2.TimeoutException):
            return UpstreamUnavailable(f"MCP server {server.name} did not answer in time", timeout=True)
        if isinstance(cause, DomainError) and not isinstance(cause, UpstreamUnavailable):
            return cause
    logger.info("MCP server unreachable: %s", type(exc).__name__, extra={"mcp_server": server.name})
    return UpstreamUnavailable(f"MCP server {server.name} could not be reached", retry_after=5)
