"""Who is calling: the two authentication modes of the gateway, and the caller's permissions.

trusted_proxy: a Mattermost-side shim forwards plugin requests with ``Mattermost-User-Id`` and an
HMAC signature over timestamp, method, path and user id; a bare ``Mattermost-User-Id`` from
anywhere else is refused. session: the caller's Mattermost token (``Authorization: Bearer`` or the
``MMAUTHTOKEN`` cookie with ``X-Requested-With: XMLHttpRequest``, Mattermost's CSRF rule) is
validated against ``/api/v4/users/me``. Either way the caller's roles come from Mattermost and are
cached briefly, keyed by a hash so no token sits in memory as a dict key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from services.common.errors import Unauthenticated
from services.common.identity import MANAGE_OTHERS_AGENT, MANAGE_OWN_AGENT, MANAGE_SYSTEM, Identity
from services.common.mattermost import MattermostClient
from services.common.mattermost.models import User
from services.common.ttl_cache import TtlCache
from services.gateway.settings import GatewaySettings

USER_ID_HEADER = "Mattermost-User-Id"
TIMESTAMP_HEADER = "X-Agents-Timestamp"
SIGNATURE_HEADER = "X-Agents-Signature"
PLUGIN_ID_HEADER = "Mattermost-Plugin-ID"


def sign_request(secret: str, timestamp: str, method: str, path_qs: str, user_id: str) -> str:
    """The shim's signature: hex HMAC-SHA256 over the four fields joined by newlines."""
    message = f"{timestamp}\n{method.upper()}\n{path_qs}\n{user_id}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Caller:
    """An authenticated user: the identity gRPC calls carry and the Mattermost account."""

    identity: Identity
    user: User


# Mattermost's role for guest accounts: it carries none of system_user's permissions.
GUEST_ROLE = "system_guest"


def permissions_for(user: User) -> frozenset[str]:
    """Cluster permissions from Mattermost roles: system admins manage everything; members may
    manage the agents they create (Mattermost grants manage_own_agent to system_user); guests,
    who do not hold system_user, may neither create agents nor see services."""
    if user.is_system_admin:
        return frozenset({MANAGE_SYSTEM, MANAGE_OTHERS_AGENT, MANAGE_OWN_AGENT})
    if GUEST_ROLE in user.role_names:
        return frozenset()
    return frozenset({MANAGE_OWN_AGENT})


class Authenticator:
    """Authenticates plugin requests in the configured ``auth_mode``, caching users briefly."""

    def __init__(
        self, settings: GatewaySettings, mattermost: MattermostClient, http_session: aiohttp.ClientSession
    ) -> None:
        self.settings = settings
        self.mattermost = mattermost
        self.http_session = http_session
        self._sessions: TtlCache[str, User] = TtlCache(settings.auth_cache_seconds)
        self._users: TtlCache[str, User] = TtlCache(settings.auth_cache_seconds)

    async def authenticate(self, request: web.Request) -> Caller:
        """The caller of ``request``; ``Unauthenticated`` (401) without valid proof or for a deactivated user."""
        if self.settings.auth_mode == "trusted_proxy":
            user = await self._from_proxy(request)
        else:
            user = await self._from_session(request)
        if not user.is_active:
            raise Unauthenticated("the user account is deactivated")
        return Caller(Identity(user_id=user.id, permissions=permissions_for(user)), user)

    async def _from_proxy(self, request: web.Request) -> User:
        user_id = request.headers.get(USER_ID_HEADER, "")
        if not user_id:
            raise Unauthenticated("authentication required")
        self.verify_signature(request, user_id, USER_ID_HEADER)
        return await self._user(user_id)

    def verify_signature(self, request: web.Request, user_id: str, vouched_header: str) -> None:
        """``Unauthenticated`` unless the shim signed this request for ``user_id`` ("" for none)
        recently; ``vouched_header`` names what the signature would vouch for, in the error."""
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not signature:
            raise Unauthenticated(f"unsigned request: {vouched_header} is only accepted from the signing proxy")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise Unauthenticated("invalid request timestamp") from None
        if skew > self.settings.proxy_max_skew_seconds:
            raise Unauthenticated("request timestamp outside the allowed clock skew")
        expected = sign_request(
            self.settings.proxy_shared_secret, timestamp, request.method, request.rel_url.path_qs, user_id
        )
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 401).
        if not hmac.compare_digest(expected.encode(), signature.encode(errors="surrogateescape")):
            raise Unauthenticated("invalid request signature")

    async def _user(self, user_id: str) -> User:
        cached = self._users.get(user_id)
        if cached is not None:
            return cached
        user = await self.mattermost.get_user(user_id)
        self._users.put(user_id, user)
        return user

    async def _from_session(self, request: web.Request) -> User:
        token = ""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        elif cookie := request.cookies.get("MMAUTHTOKEN"):
            if request.headers.get("X-Requested-With") != "XMLHttpRequest":
                raise Unauthenticated("cookie authentication requires the X-Requested-With: XMLHttpRequest header")
            token = cookie
        if not token:
            raise Unauthenticated("authentication required")
        if not token.isascii():  # Mattermost's tokens are; other bytes could not even be hashed
            raise Unauthenticated("invalid token")
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._sessions.get(key)
        if cached is not None:
            return cached
        client = MattermostClient(self.mattermost.base_url, token, session=self.http_session)
        try:
            user = await client.get_me()
        finally:
            await client.aclose()
        self._sessions.put(key, user)
        return user
