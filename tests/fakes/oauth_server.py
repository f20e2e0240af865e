"""An OAuth 2.1 authorization server for the MCP OAuth tests (aiohttp, on a free loopback port).

RFC 8414 metadata, dynamic client registration (RFC 7591), an authorization endpoint that the
test drives as the user's browser would (it approves at once and redirects with a code), a token
endpoint checking PKCE S256 and the redirect URI, refresh with rotation, and revocation (RFC 7009).

    async with FakeAuthServer() as auth:
        auth.valid                 # access tokens currently good (the MCP server checks these)
        auth.grants["refresh_token"]  # token requests seen, by grant type
        auth.revoked               # tokens revoked
        auth.expires_in            # lifetime given to the next access token (seconds)
        auth.hold_refresh          # an Event: refresh requests wait for it once counted
        auth.pkce_methods          # the code challenge methods its metadata offers

Tokens carry ``SENTINEL`` so that a test can look for them in logs and answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

SENTINEL = "tok-SENTINEL-"


class FakeAuthServer:
    """One authorization server; its issuer is its root URL."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.revoked: list[str] = []
        self.grants: Counter[str] = Counter()
        self.registered: list[dict[str, Any]] = []
        self.expires_in = 3600
        self.hold_refresh: asyncio.Event | None = None
        self.pkce_methods = ["S256"]
        self._codes: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeAuthServer:
        app = web.Application()
        app.router.add_get("/.well-known/oauth-authorization-server", self._metadata)
        app.router.add_post("/register", self._register)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_post("/revoke", self._revoke)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "registration_endpoint": f"{self.url}/register",
                "revocation_endpoint": f"{self.url}/revoke",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": self.pkce_methods,
            }
        )

    async def _register(self, request: web.Request) -> web.Response:
        document = await request.json()
        self.registered.append(document)
        return web.json_response({**document, "client_id": f"client-{len(self.registered)}"}, status=201)

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            raise web.HTTPBadRequest(text="PKCE S256 and response_type=code are required")
        code = secrets.token_urlsafe(16)
        self._codes[code] = {k: q.get(k, "") for k in ("client_id", "redirect_uri", "code_challenge")}
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    def _issue(self) -> dict[str, Any]:
        access, refresh = SENTINEL + secrets.token_urlsafe(16), SENTINEL + secrets.token_urlsafe(16)
        self.valid.add(access)
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in, "refresh_token": refresh}

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = str(form.get("grant_type", ""))
        self.grants[grant_type] += 1
        if grant_type == "authorization_code":
            issued = self._codes.pop(str(form.get("code", "")), None)
            verifier = str(form.get("code_verifier", ""))
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (
                issued is None
                or issued["code_challenge"] != digest
                or issued["redirect_uri"] != form.get("redirect_uri")
                or issued["client_id"] != form.get("client_id")
            ):
                return web.json_response({"error": "invalid_grant"}, status=400)
            return web.json_response(self._issue())
        if grant_type == "refresh_token":
            if self.hold_refresh is not None:
                await self.hold_refresh.wait()
            refresh = str(form.get("refresh_token", ""))
            if refresh not in self.refresh_tokens:
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.refresh_tokens.discard(refresh)  # rotated: a refresh token is good once
            return web.json_response(self._issue())
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def _revoke(self, request: web.Request) -> web.Response:
        token = str((await request.post()).get("token", ""))
        self.revoked.append(token)
        self.valid.discard(token)
        self.refresh_tokens.discard(token)
        return web.Response()
