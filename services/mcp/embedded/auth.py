"""Who is calling the Mattermost MCP server: a bearer token Mattermost itself accepts.

Personal Access Tokens and OAuth access tokens issued by Mattermost are both Mattermost sessions,
so ``GET /api/v4/users/me`` with the token is the check, and its answer is the user the tools run
as; an accepted token is reused for a short while, as the gateway does with its callers' tokens.
A token that names its own audience (a JWT's ``aud``) must name this server: a token minted for
another resource is refused before it is sent anywhere, so it is never replayed to Mattermost.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import jwt
from mcp.server.auth.provider import AccessToken

from services.common.errors import NotFound, PermissionDenied, Unauthenticated
from services.common.mattermost import MattermostClient
from services.common.ttl_cache import TtlCache

logger = logging.getLogger(__name__)

# What the protected-resource metadata offers; Mattermost grants no narrower scope to its tokens.
SCOPES = ["user"]


def foreign_audience(token: str, resource: str) -> bool:
    """Whether ``token`` is a JWT whose ``aud`` does not include ``resource``."""
    if token.count(".") != 2:
        return False
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    audience = claims.get("aud")
    if audience is None:
        return False
    audiences = [audience] if isinstance(audience, str) else audience
    return resource.rstrip("/") not in [str(a).rstrip("/") for a in audiences]


class MattermostTokenVerifier:
    """The SDK's TokenVerifier: a token is valid when Mattermost says whose it is."""

    def __init__(self, client_for: Callable[[str], MattermostClient], resource: str, cache_seconds: float) -> None:
        self._client_for = client_for
        self._resource = resource
        # Keyed by a hash, so no token sits in memory as a dict key; only accepted tokens are kept.
        self._accepted: TtlCache[str, AccessToken] = TtlCache(cache_seconds)

    async def verify_token(self, token: str) -> AccessToken | None:
        """The user's access for ``token``, or None for a token Mattermost refuses or one for another audience."""
        key = hashlib.sha256(token.encode()).hexdigest()
        # An accepted token passed the audience check already: no JWT decode per request.
        if (cached := self._accepted.get(key)) is not None:
            return cached
        if foreign_audience(token, self._resource):
            logger.info("refused a bearer token issued for another audience")
            return None
        access = await self._ask_mattermost(token)
        if access is not None:
            self._accepted.put(key, access)
        return access

    async def _ask_mattermost(self, token: str) -> AccessToken | None:
        client = self._client_for(token)
        try:
            user = await client.get_me()
        except (Unauthenticated, PermissionDenied, NotFound):
            return None
        finally:
            await client.aclose()
        if not user.is_active:
            return None
        # Mattermost's own tokens are for this site; the resource is this server's own URL.
        return AccessToken(token=token, client_id=user.id, scopes=SCOPES, resource=self._resource, subject=user.id)
