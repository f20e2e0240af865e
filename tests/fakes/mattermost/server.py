"""``FakeMattermost``: a loopback Mattermost speaking REST v4 and the WebSocket API, for tests.

    async with FakeMattermost() as mm:
        alice = mm.add_user("alice")
        client = MattermostClient(mm.url, alice.token)

Every request is recorded (method, path, route, query, JSON body, user, status, answer) so tests
can assert what happened; ``fail_next`` injects errors; ``holding`` holds requests until released;
``latency`` delays every answer (benchmarks); ``drop_websockets`` simulates a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import leftovers
from tests.fakes.gate import Gate
from tests.fakes.mattermost import bots, directory, post_deletion, posts, tokens
from tests.fakes.mattermost.context import HUB, STATE, USER_ID
from tests.fakes.mattermost.events import EventHub
from tests.fakes.mattermost.state import (
    JSON,
    FakeChannel,
    FakeError,
    FakeState,
    FakeTeam,
    FakeUser,
    new_id,
)
from tests.polling import poll

WEBSOCKET_PATH = "/api/v4/websocket"
_UNAUTHENTICATED = ("/api/v4/system/ping",)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake answered, and its answer."""

    method: str
    path: str
    route: str
    query: dict[str, str]
    json: Any
    user_id: str
    status: int
    response_json: Any
    # When the fake answered it (time.monotonic), for tests about request rates.
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    path_prefix: str
    status: int
    remaining: int
    retry_after: float | None


class FakeMattermost:
    """A Mattermost server in this process on 127.0.0.1 and a port the OS picked (or ``port``)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.state = FakeState()
        self.hub = EventHub(self.state)
        self.requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._holds: list[tuple[str, Gate]] = []
        self.latency = 0.0  # seconds before each REST answer, as a network hop would add
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeMattermost:
        app = web.Application(middlewares=[self._middleware])
        app[STATE] = self.state
        app[HUB] = self.hub
        add_routes(app)
        app.router.add_get(WEBSOCKET_PATH, self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        leftovers.started(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        leftovers.stopped(self)
        await self.hub.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- seeding ------------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        roles: str = "system_user",
        is_bot: bool = False,
        *,
        user_id: str = "",
        token: str = "",
    ) -> FakeUser:
        """A user with a personal access token (``roles="system_admin system_user"`` for an admin).

        ``user_id`` and ``token`` are random unless given (the sandbox gives them, so that its
        printed exports stay valid from one run to the next)."""
        return self.state.add_user(username, roles=roles, is_bot=is_bot, user_id=user_id, token=token)

    def issue_token(self, user_id: str) -> str:
        """Another access token for a user, e.g. for a bot created through REST."""
        return self.state.issue_token(user_id)

    def add_team(self, name: str, display_name: str = "", type: str = "O", *, team_id: str = "") -> FakeTeam:
        """A team (``O`` open, ``I`` invite only); ``team_id`` random unless given."""
        return self.state.add_team(name, display_name, type, team_id=team_id)

    def add_channel(
        self, team_id: str, name: str, type: str = "O", display_name: str = "", *, channel_id: str = ""
    ) -> FakeChannel:
        """A channel of a team: ``O`` open or ``P`` private (use ``add_direct_channel`` for DMs);
        ``channel_id`` random unless given."""
        return self.state.add_channel(team_id, name, type, display_name, channel_id=channel_id)

    def add_direct_channel(self, user_a: FakeUser, user_b: FakeUser) -> FakeChannel:
        """The DM channel of two users, with both as members."""
        channel = self.state.direct_channel(user_a.id, user_b.id)
        return FakeChannel(id=channel["id"], name=channel["name"], type="D", team_id="")

    def add_member(self, target: FakeTeam | FakeChannel, user: FakeUser) -> None:
        """Add a user to a team or to a channel."""
        if isinstance(target, FakeTeam):
            self.state.add_team_member(target.id, user.id)
        else:
            self.state.add_channel_member(target.id, user.id)

    def add_post(
        self,
        user: FakeUser,
        channel: FakeChannel,
        message: str,
        *,
        root_id: str = "",
        props: JSON | None = None,
        file_ids: list[str] | None = None,
        create_at: int | None = None,
    ) -> JSON:
        """Store a post without sending events (history that existed before the test)."""
        return self.state.create_post(
            user.id, channel.id, message, root_id=root_id, props=props, file_ids=file_ids, create_at=create_at
        )

    def add_file(self, user: FakeUser, name: str, content: bytes, mime_type: str = "text/plain") -> JSON:
        """An uploaded file (FileInfo JSON); attach it with ``add_post(..., file_ids=[id])``."""
        return self.state.add_file(user.id, name, content, mime_type)

    async def user_posts(
        self,
        user: FakeUser,
        channel: FakeChannel,
        message: str,
        root_id: str = "",
        props: JSON | None = None,
        file_ids: list[str] | None = None,
    ) -> JSON:
        """A user posts through the UI: the post is stored and ``posted`` goes to channel members."""
        post = self.state.create_post(user.id, channel.id, message, root_id=root_id, props=props, file_ids=file_ids)
        await self.hub.post_created(post)
        return post

    def set_license(self, sku_short_name: str = "", *, enterprise_edition: bool = False) -> None:
        """The server's license as clients see it: ``sku_short_name`` (``entry``, ``professional``,
        ``enterprise``, ``advanced``) or none; ``enterprise_edition`` the build (Team Edition if False)."""
        if sku_short_name:
            self.state.client_license = {"IsLicensed": "true", "SkuShortName": sku_short_name, "IsTrial": "false"}
        else:
            self.state.client_license = {"IsLicensed": "false"}
        self.state.client_config["BuildEnterpriseReady"] = str(enterprise_edition).lower()

    # --- inspection and fault injection ------------------------------------------------------

    def post(self, post_id: str) -> JSON:
        """The stored post (live object, for assertions)."""
        return self.state.posts[post_id]

    def routes(self) -> set[tuple[str, str]]:
        """Every (method, route template) the fake serves, e.g. ``("GET", "/api/v4/posts/{post_id}")``."""
        assert self._runner is not None, "start the fake first"
        return {
            (route.method, route.resource.canonical)
            for route in self._runner.app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        """Recorded requests with this method whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def fail_next(self, path_prefix: str, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status`` (and Retry-After)."""
        self._faults.append(_Fault(path_prefix, status, count, retry_after))

    @contextmanager
    def holding(self, path_prefix: str) -> Iterator[Gate]:
        """Hold the requests under ``path_prefix`` at a gate until it is released (at the latest
        when the block ends)."""
        hold = (path_prefix, Gate())
        self._holds.append(hold)
        try:
            yield hold[1]
        finally:
            self._holds.remove(hold)
            hold[1].release()

    def drop_script(self) -> None:
        """Forget the injected failures not served yet."""
        self._faults.clear()

    async def drop_websockets(self) -> int:
        """Close every WebSocket as a restarting server would; returns how many were open."""
        return await self.hub.drop_all()

    async def wait_for_websockets(self, count: int, within: float = 5.0, *, user_id: str = "") -> None:
        """Poll until at least ``count`` authenticated WebSockets are connected (of ``user_id``
        only, when given: a total also counts other users' sockets reconnecting meanwhile)."""

        def connected() -> int:
            return sum(1 for c in self.hub.connections if not user_id or c.user_id == user_id)

        await poll(
            lambda: connected() >= count,
            within=within,
            interval=0.005,
            message=lambda: f"{connected()} WebSocket(s) connected, wanted {count}",
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and path.startswith(fault.path_prefix):
                fault.remaining -= 1
                return fault
        return None

    def _authenticate(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in {"bearer", "token"}:
            token = request.query.get("access_token", "")
        user_id = self.state.tokens.get(token.strip())
        if user_id is None or self.state.users[user_id]["delete_at"]:
            return None
        return user_id

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # Multipart bodies stay unread: ``request.post()`` must still be able to stream them.
        multipart = request.content_type.startswith("multipart/")
        body = await request.read() if request.can_read_body and not multipart else b""
        user_id = self._authenticate(request) or ""
        request[USER_ID] = user_id
        fault: _Fault | None = None
        for path_prefix, gate in list(self._holds):
            if request.path.startswith(path_prefix):
                await gate.passing()
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            fault = self._take_fault(request.path)
            if fault is not None:
                raise FakeError(fault.status, "fake.injected_fault", f"injected {fault.status}")
            if not user_id and not request.path.startswith(_UNAUTHENTICATED):
                has_credentials = "Authorization" in request.headers or "access_token" in request.query
                if request.path != WEBSOCKET_PATH or has_credentials:
                    raise FakeError(401, "api.context.session_expired.app_error", "Invalid or expired session.")
            response = await handler(request)
        except FakeError as error:
            response = web.json_response(_app_error(error), status=error.status)
            if fault is not None and fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        except web.HTTPException as exc:
            response = web.json_response(_app_error(FakeError(exc.status, "fake.http", exc.reason)), status=exc.status)
        self._record(request, body, user_id, response)
        return response

    def _record(self, request: web.Request, body: bytes, user_id: str, response: web.StreamResponse) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else request.path
        request_json = _maybe_json(body) if "json" in request.content_type else None
        response_json = None
        if isinstance(response, web.Response) and response.content_type == "application/json" and response.body:
            response_json = _maybe_json(bytes(response.body))  # type: ignore[arg-type]
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                route=route,
                query=dict(request.query),
                json=request_json,
                user_id=user_id,
                status=response.status,
                response_json=response_json,
            )
        )

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # Without credentials on the upgrade the client authenticates with a challenge action.
        return await self.hub.handle(request, request[USER_ID] or None)


def add_routes(app: web.Application) -> None:
    """Register every REST route; path parameters carry the spec's names."""
    v4 = "/api/v4"
    app.router.add_routes(
        [
            web.get(f"{v4}/system/ping", directory.ping),
            web.get(f"{v4}/license/client", directory.get_client_license),
            web.get(f"{v4}/config/client", directory.get_client_config),
            web.get(f"{v4}/users", directory.get_users),
            web.post(f"{v4}/users/ids", directory.get_users_by_ids),
            web.post(f"{v4}/users/search", directory.search_users),
            web.get(f"{v4}/users/username/{{username}}", directory.get_user_by_username),
            web.get(f"{v4}/users/{{user_id}}", directory.get_user),
            web.post(f"{v4}/users/{{user_id}}/image", directory.set_profile_image),
            web.get(f"{v4}/users/{{user_id}}/teams", directory.get_user_teams),
            web.get(f"{v4}/users/{{user_id}}/teams/{{team_id}}/channels", directory.get_channels_for_user),
            web.get(f"{v4}/users/{{user_id}}/channels", directory.get_all_channels_for_user),
            web.get(f"{v4}/teams/{{team_id}}", directory.get_team),
            web.get(f"{v4}/teams/{{team_id}}/members/{{user_id}}", directory.get_team_member),
            web.post(f"{v4}/teams/{{team_id}}/posts/search", posts.search_posts),
            web.get(f"{v4}/teams/{{team_id}}/members", directory.get_team_members),
            web.post(f"{v4}/channels", directory.create_channel),
            web.post(f"{v4}/channels/direct", directory.create_direct_channel),
            web.get(f"{v4}/channels", directory.get_all_channels),
            web.get(f"{v4}/channels/{{channel_id}}/members", directory.get_channel_members),
            web.post(f"{v4}/channels/{{channel_id}}/members", directory.add_channel_member),
            web.get(f"{v4}/channels/{{channel_id}}", directory.get_channel),
            web.get(f"{v4}/channels/{{channel_id}}/members/{{user_id}}", directory.get_channel_member),
            web.get(f"{v4}/channels/{{channel_id}}/posts", posts.get_channel_posts),
            web.post(f"{v4}/posts", posts.create_post),
            web.get(f"{v4}/posts/{{post_id}}", posts.get_post),
            web.put(f"{v4}/posts/{{post_id}}", posts.update_post),
            web.put(f"{v4}/posts/{{post_id}}/patch", posts.patch_post),
            web.delete(f"{v4}/posts/{{post_id}}", post_deletion.delete_post),
            web.get(f"{v4}/posts/{{post_id}}/thread", posts.get_post_thread),
            web.post(f"{v4}/reactions", posts.add_reaction),
            web.post(f"{v4}/files", posts.upload_file),
            web.get(f"{v4}/files/{{file_id}}", posts.get_file),
            web.get(f"{v4}/files/{{file_id}}/info", posts.get_file_info),
            web.post(f"{v4}/bots", bots.create_bot),
            web.get(f"{v4}/bots/{{bot_user_id}}", bots.get_bot),
            web.put(f"{v4}/bots/{{bot_user_id}}", bots.patch_bot),
            web.post(f"{v4}/bots/{{bot_user_id}}/disable", bots.disable_bot),
            web.post(f"{v4}/bots/{{bot_user_id}}/enable", bots.enable_bot),
            web.post(f"{v4}/users/{{user_id}}/tokens", tokens.create_user_access_token),
            web.post(f"{v4}/users/tokens/revoke", tokens.revoke_user_access_token),
        ]
    )


def _app_error(error: FakeError) -> JSON:
    return {
        "id": error.error_id,
        "message": error.message,
        "detailed_error": "",
        "request_id": new_id(),
        "status_code": error.status,
    }


def _maybe_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
