"""Per-user OAuth to remote MCP servers: discovery, the authorization code flow with PKCE, the
bearer each request carries, refresh and revocation.

Discovery follows the MCP authorization spec: the server's protected-resource metadata (RFC 9728),
whose URL is accepted only on the server's own origin, names the authorization server, whose
metadata (RFC 8414) gives the endpoints. Every URL goes through the outbound guard. The SDK's
OAuth client is not used on the call path: it holds a lock across whole requests, so one user's
concurrent calls queued behind each other; ``BearerAuth`` only reads the cached token per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.common.errors import FailedPrecondition, InvalidInput, NotFound, UpstreamUnavailable
from services.common.http_guard import OutboundPolicy, ResolveName, resolve_with_system
from services.mcp.config import McpConfig, RemoteServer
from services.mcp.grants import Client, Grant, GrantStore, Pending
from services.mcp.outbound import GuardedTransport
from services.mcp.sessions import translated

logger = logging.getLogger(__name__)

PLUGIN_PATH = "/plugins/mattermost-ai"
MAX_METADATA_URL = 2048
# A metadata document or token answer larger than this is not one.
MAX_BODY_BYTES = 256 * 1024
CLIENT_NAME = "Mattermost Agents"
# A grant (or its absence) read from the store is reused this long: a grant stored or deleted
# through another replica is seen here within it.
GRANT_CACHE_SECONDS = 5.0
# Refreshes of different grants share this many locks (a rare operation; a bounded set of locks).
REFRESH_LOCKS = 64
DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with default ports filled in and case folded; None if not absolute http(s)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def check_resource_metadata(url: str, server: RemoteServer) -> str:
    """``url`` if it may be the server's protected-resource metadata: absolute, no userinfo, at most
    2048 characters and on the server's own origin; InvalidInput naming the field otherwise."""
    if len(url) > MAX_METADATA_URL:
        raise InvalidInput(f"resource_metadata is longer than {MAX_METADATA_URL} characters", field="resource_metadata")
    origin = _origin(url)
    if origin is None or "@" in urlsplit(url).netloc:
        raise InvalidInput(
            "resource_metadata must be an absolute http(s) URL without userinfo", field="resource_metadata"
        )
    if origin != _origin(server.base_url):
        raise InvalidInput(
            f"resource_metadata must be on MCP server {server.name}'s own origin", field="resource_metadata"
        )
    return url


def _challenge_metadata(challenge: str) -> str:
    """The ``resource_metadata`` parameter of a ``WWW-Authenticate: Bearer`` challenge, or ''."""
    for part in challenge.replace("Bearer ", "", 1).split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "resource_metadata":
            return value.strip().strip('"')
    return ""


def _well_known(url: str, suffix: str) -> list[str]:
    """RFC 8414 / RFC 9728 locations: the suffix inserted before the path, then at the root."""
    parts = urlsplit(url)
    root = f"{parts.scheme}://{parts.netloc}/.well-known/{suffix}"
    path = parts.path.rstrip("/")
    return [root + path, root] if path else [root]


class OAuthFlow:
    """Starts, completes and forgets users' grants, and hands out their current bearer tokens."""

    def __init__(
        self,
        store: GrantStore,
        config: Callable[[], McpConfig],
        policy: Callable[[], OutboundPolicy],
        *,
        site_url: str,
        state_ttl: float,
        refresh_margin: float,
        timeout: float,
        resolve_name: ResolveName = resolve_with_system,
    ) -> None:
        self._store = store
        self._config = config
        self._policy = policy
        self._site_url = site_url.rstrip("/")
        self._state_ttl = state_ttl
        self._refresh_margin = refresh_margin
        self._timeout = timeout
        self._resolve_name = resolve_name
        # (user, server) → (grant or None, monotonic time read).
        self._cache: dict[tuple[str, str], tuple[Grant | None, float]] = {}
        self._refreshing = [asyncio.Lock() for _ in range(REFRESH_LOCKS)]

    @property
    def redirect_uri(self) -> str:
        """Where authorization servers send users' browsers back (the gateway's callback route)."""
        return f"{self._site_url}{PLUGIN_PATH}/oauth/callback"

    def start_url(self, server: RemoteServer) -> str:
        """Where a user connects to ``server`` (the gateway's start route)."""
        return f"{self._site_url}{PLUGIN_PATH}/mcp/oauth/{quote(server.name, safe='')}/start"

    def _server(self, name: str) -> RemoteServer:
        server = self._config().by_name(name)
        if server is None or not server.enabled:
            raise NotFound(f"no enabled MCP server {name!r}")
        return server

    def _http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=GuardedTransport(self._policy, self._resolve_name),
            timeout=httpx2.Timeout(self._timeout),
            follow_redirects=False,
        )

    async def start(self, user_id: str, server_name: str, resource_metadata: str = "") -> str:
        """A new authorization for the user: its state recorded, the authorization URL returned."""
        server = self._server(server_name)
        if resource_metadata:
            check_resource_metadata(resource_metadata, server)
        with translated(server):
            async with self._http() as http:
                resource = await self._resource_metadata(http, server, resource_metadata)
                issuer = _first_str(resource.get("authorization_servers"))
                if not issuer or _origin(issuer) is None:
                    raise FailedPrecondition(f"MCP server {server.name} names no authorization server")
                metadata = await self._authorization_metadata(http, server, issuer)
                client = await self._client(http, server, metadata)
        verifier = generate_token(64)
        state = secrets.token_urlsafe(32)
        expires = int((time.time() + self._state_ttl) * 1000)
        await self._store.add_pending(
            state, Pending(user_id, server.name, verifier, self.redirect_uri, client, expires)
        )
        params = [
            ("response_type", "code"),
            ("client_id", client.client_id),
            ("redirect_uri", self.redirect_uri),
            ("state", state),
            ("code_challenge", create_s256_code_challenge(verifier)),  # type: ignore[no-untyped-call]
            ("code_challenge_method", "S256"),
            ("resource", server.base_url),
        ]
        scopes = resource.get("scopes_supported")
        if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes) and scopes:
            params.append(("scope", " ".join(scopes)))
        return str(add_params_to_uri(str(metadata["authorization_endpoint"]), params))

    async def complete(self, user_id: str, state: str, code: str, error: str = "") -> RemoteServer:
        """Exchange the callback's code for the user's grant; the state is used up either way."""
        if not state:
            raise InvalidInput("the OAuth callback carries no state", field="state")
        pending = await self._store.take_pending(state, user_id)
        if pending is None:
            raise InvalidInput("unknown, expired or already used OAuth state", field="state")
        server = self._server(pending.server_name)
        if error or not code:
            # The provider's own words are not repeated: they are its text, not ours.
            raise InvalidInput(
                f"MCP server {server.name}'s authorization server refused the authorization", field="code"
            )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
            "resource": server.base_url,
        }
        grant = await self._token(server, user_id, pending.client, form)
        await self._store.put(grant)
        self._remember((user_id, server.name), grant)
        logger.info("MCP OAuth grant stored", extra={"mcp_server": server.name})
        return server

    async def disconnect(self, user_id: str, server_name: str) -> RemoteServer | None:
        """Forget the user's grant, revoking it where the server supports that; the server if known."""
        grant = await self._store.delete(user_id, server_name)
        self._cache.pop((user_id, server_name), None)
        server = self._config().by_name(server_name)
        if grant is not None and server is not None and grant.client.revocation_endpoint:
            await self._revoke(server, grant)
        return server

    async def connected(self, user_id: str, server: RemoteServer) -> bool:
        """Whether the user holds a grant for the server."""
        return await self._grant(user_id, server.name) is not None

    async def bearer(self, user_id: str, server: RemoteServer) -> str | None:
        """The user's access token for the server, refreshed first when it is about to expire."""
        grant = await self._grant(user_id, server.name)
        if grant is None:
            return None
        if self._expiring(grant) and grant.refresh_token:
            grant = await self._refresh(user_id, server)
        return grant.access_token if grant is not None else None

    def forget(self, user_id: str, server_name: str) -> None:
        """Drop the cached grant (the server refused it): the next request reads the store again."""
        self._cache.pop((user_id, server_name), None)

    async def _grant(self, user_id: str, server_name: str) -> Grant | None:
        key = (user_id, server_name)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[1] < GRANT_CACHE_SECONDS:
            return cached[0]
        return self._remember(key, await self._store.get(user_id, server_name))

    def _remember(self, key: tuple[str, str], grant: Grant | None) -> Grant | None:
        now = time.monotonic()
        self._cache.pop(key, None)
        # Oldest first (insertion order): stale entries go as new ones come.
        while self._cache and now - next(iter(self._cache.values()))[1] >= GRANT_CACHE_SECONDS:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (grant, now)
        return grant

    def _expiring(self, grant: Grant) -> bool:
        return grant.expires_at is not None and grant.expires_at - time.time() <= self._refresh_margin

    async def _refresh(self, user_id: str, server: RemoteServer) -> Grant | None:
        """One refresh per grant at a time: a lock in this process, the row lock across replicas;
        whoever comes second finds the grant fresh and uses it."""
        key = (user_id, server.name)
        async with self._refreshing[hash(key) % REFRESH_LOCKS]:
            async with self._store.locked(user_id, server.name) as (grant, conn):
                if grant is not None and self._expiring(grant) and grant.refresh_token:
                    form = {"grant_type": "refresh_token", "refresh_token": grant.refresh_token}
                    try:
                        # Only to the token endpoint the grant was issued by.
                        fresh = await self._token(server, user_id, grant.client, form)
                    except InvalidInput:
                        # The refresh token was refused: the user must connect again.
                        await self._store.remove(conn, user_id, server.name)
                        grant = None
                    else:
                        grant = replace(fresh, refresh_token=fresh.refresh_token or grant.refresh_token)
                        await self._store.put(grant, conn)
            return self._remember(key, grant)

    async def _token(self, server: RemoteServer, user_id: str, client: Client, form: dict[str, str]) -> Grant:
        form = {**form, "client_id": client.client_id}
        if client.client_secret:
            form["client_secret"] = client.client_secret
        with translated(server):
            async with self._http() as http:
                response = await http.post(client.token_endpoint, data=form, headers={"Accept": "application/json"})
                body = await _json(response)
        token = body.get("access_token") if response.is_success else None
        if not isinstance(token, str) or not token or str(body.get("token_type", "")).lower() != "bearer":
            logger.warning(
                "MCP OAuth token request refused (%d)", response.status_code, extra={"mcp_server": server.name}
            )
            raise InvalidInput(
                f"MCP server {server.name}'s authorization server refused the token request", field="code"
            )
        expires_in = body.get("expires_in")
        refresh = body.get("refresh_token")
        return Grant(
            user_id,
            server.name,
            token,
            refresh if isinstance(refresh, str) else "",
            time.time() + float(expires_in) if isinstance(expires_in, int | float) else None,
            client,
        )

    async def _revoke(self, server: RemoteServer, grant: Grant) -> None:
        """RFC 7009, best effort: the grant is gone here whatever the server answers."""
        client = grant.client
        for token, hint in ((grant.refresh_token, "refresh_token"), (grant.access_token, "access_token")):
            if not token:
                continue
            form = {"token": token, "token_type_hint": hint, "client_id": client.client_id}
            if client.client_secret:
                form["client_secret"] = client.client_secret
            try:
                with translated(server):
                    async with self._http() as http:
                        await http.post(client.revocation_endpoint, data=form)
            except (UpstreamUnavailable, FailedPrecondition) as exc:
                logger.info("MCP OAuth revocation failed: %s", type(exc).__name__, extra={"mcp_server": server.name})

    async def _resource_metadata(self, http: httpx2.AsyncClient, server: RemoteServer, given: str) -> dict[str, Any]:
        """The protected-resource metadata: at ``given``, else where the server's 401 says, else at
        the well-known locations of the server's origin. Only ever on the server's own origin."""
        candidates = [given] if given else []
        if not candidates:
            probe = await http.post(
                server.base_url,
                json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                headers={**server.headers, "Accept": "application/json, text/event-stream"},
            )
            named = _challenge_metadata(probe.headers.get("www-authenticate", "")) if probe.status_code == 401 else ""
            candidates = [check_resource_metadata(named, server)] if named else []
            candidates += _well_known(server.base_url, "oauth-protected-resource")
        for url in candidates:
            found = await _get_json(http, url)
            if found is not None:
                return found
        raise FailedPrecondition(f"MCP server {server.name} publishes no protected-resource metadata")

    async def _authorization_metadata(
        self, http: httpx2.AsyncClient, server: RemoteServer, issuer: str
    ) -> dict[str, Any]:
        """RFC 8414 metadata of ``issuer``, checked: it names itself, offers PKCE S256 and both endpoints."""
        for url in _well_known(issuer, "oauth-authorization-server") + _well_known(issuer, "openid-configuration"):
            found = await _get_json(http, url)
            if found is None:
                continue
            if str(found.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
                raise FailedPrecondition(
                    f"MCP server {server.name}'s authorization server metadata names another issuer"
                )
            if "S256" not in (found.get("code_challenge_methods_supported") or []):
                raise FailedPrecondition(f"MCP server {server.name}'s authorization server does not offer PKCE S256")
            for endpoint in ("authorization_endpoint", "token_endpoint"):
                if _origin(str(found.get(endpoint, ""))) is None:
                    raise FailedPrecondition(f"MCP server {server.name}'s authorization server has no {endpoint}")
            return found
        raise FailedPrecondition(f"MCP server {server.name}'s authorization server publishes no metadata")

    async def _client(self, http: httpx2.AsyncClient, server: RemoteServer, metadata: dict[str, Any]) -> Client:
        """The admin's client for the server, else one registered dynamically (RFC 7591)."""
        token_endpoint = str(metadata["token_endpoint"])
        revocation = str(metadata.get("revocation_endpoint") or "")
        if _origin(revocation) is None:
            revocation = ""
        if server.client_id:
            return Client(server.client_id, server.client_secret, token_endpoint, revocation)
        registration = str(metadata.get("registration_endpoint") or "")
        if _origin(registration) is None:
            raise FailedPrecondition(f"MCP server {server.name} needs an OAuth client ID in its configuration")
        document = {
            "client_name": CLIENT_NAME,
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        response = await http.post(registration, json=document)
        body = await _json(response)
        client_id = body.get("client_id") if response.is_success else None
        if not isinstance(client_id, str) or not client_id:
            raise FailedPrecondition(f"MCP server {server.name}'s authorization server refused to register a client")
        secret = body.get("client_secret")
        return Client(client_id, secret if isinstance(secret, str) else "", token_endpoint, revocation)


class BearerAuth(httpx2.Auth):
    """Adds the user's current bearer to each request; a refused one is dropped from the cache.

    Nothing is held across the request: concurrent calls of one user run side by side.
    """

    def __init__(self, flow: OAuthFlow, user_id: str, server: RemoteServer) -> None:
        self._flow = flow
        self._user_id = user_id
        self._server = server

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send ``request`` with the bearer, if the user holds a grant."""
        token = await self._flow.bearer(self._user_id, self._server)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if token and response.status_code == 401:
            self._flow.forget(self._user_id, self._server.name)


def _first_str(value: object) -> str:
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return ""


async def _json(response: httpx2.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is none (or too large to be one)."""
    raw = b""
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _get_json(http: httpx2.AsyncClient, url: str) -> dict[str, Any] | None:
    async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
        if not response.is_success:
            return None
        body = await _json(response)
    return body or None
