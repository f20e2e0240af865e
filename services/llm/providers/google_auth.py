"""OAuth access tokens for Google Cloud (Vertex AI), fetched with our own aiohttp session.

Three sources, as Google's Application Default Credentials define them:
- a service-account key (JSON): a self-signed RS256 JWT exchanged at the key's ``token_uri``
  (RFC 7523 ``jwt-bearer`` grant);
- an ``authorized_user`` file (``gcloud auth application-default login``): a refresh-token grant;
- neither: the GCE/GKE metadata server, which serves the attached service account's token.

PyJWT (with ``cryptography``) signs the JWT. google-auth would bring its own synchronous HTTP
transport (requests) that must run in threads, plus rsa/pyasn1 and cachetools; the exchange itself
is a single form POST, which stays async, on the shared session factory and testable against a
fake ``token_uri``. Tokens and keys are never logged or put in error messages.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from services.common.errors import ErrorClass, InvalidInput
from services.llm.providers.base import ProviderError
from services.llm.providers.errors import MAX_ERROR_BODY_BYTES, provider_error_from_exception
from services.llm.providers.http_stream import read_bounded

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
METADATA_TOKEN_URL = "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Refresh a minute early so a token never expires between the check and the upstream call.
EXPIRY_MARGIN_SECONDS = 60
_PROVIDER = "Google Cloud auth"


@dataclass(frozen=True)
class GoogleCredentials:
    """Parsed credentials: ``kind`` is ``service_account``, ``authorized_user`` or ``metadata``."""

    kind: str
    info: dict[str, Any]


def parse_credentials(text: str) -> GoogleCredentials:
    """Parse a service-account or authorized-user JSON; empty text means the metadata server."""
    if not text.strip():
        return GoogleCredentials("metadata", {})
    try:
        info = json.loads(text)
    except ValueError:
        raise InvalidInput("the Vertex service account JSON is not valid JSON", field="vertexAuthCredentials") from None
    if not isinstance(info, dict):
        raise InvalidInput("the Vertex service account JSON must be an object", field="vertexAuthCredentials")
    kind = str(info.get("type") or "service_account")
    required = {
        "service_account": ("client_email", "private_key"),
        "authorized_user": ("client_id", "client_secret", "refresh_token"),
    }.get(kind)
    if required is None:
        raise InvalidInput(f"unsupported Google credentials type {kind!r}", field="vertexAuthCredentials")
    missing = [k for k in required if not info.get(k)]
    if missing:
        raise InvalidInput(f"the Vertex credentials JSON lacks {', '.join(missing)}", field="vertexAuthCredentials")
    return GoogleCredentials(kind, info)


class GoogleAccessTokens:
    """A cached access token, refreshed once (not once per caller) when it nears expiry."""

    def __init__(self, credentials: GoogleCredentials, *, metadata_url: str = METADATA_TOKEN_URL) -> None:
        self.credentials = credentials
        self.metadata_url = metadata_url
        self._token = ""
        self._expires_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self, session: aiohttp.ClientSession) -> str:
        """A valid bearer token, fetching a new one when the cached one is (nearly) expired."""
        if self._token and time.monotonic() < self._expires_at:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._expires_at:
                return self._token
            doc = await self._fetch(session)
            token = doc.get("access_token")
            if not isinstance(token, str) or not token:
                raise ProviderError(f"{_PROVIDER} answered without an access token", code="invalid_token_response")
            lifetime = float(doc.get("expires_in") or 3600)
            self._token = token
            self._expires_at = time.monotonic() + max(lifetime - EXPIRY_MARGIN_SECONDS, 0.0)
            return token

    def invalidate(self) -> None:
        """Forget the cached token (after the upstream rejected it)."""
        self._token = ""
        self._expires_at = 0.0

    async def _fetch(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        info = self.credentials.info
        if self.credentials.kind == "service_account":
            token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
            form = {"grant_type": JWT_BEARER_GRANT, "assertion": _signed_assertion(info, token_uri)}
            return await _request(session, "POST", token_uri, data=form)
        if self.credentials.kind == "authorized_user":
            token_uri = str(info.get("token_uri") or DEFAULT_TOKEN_URI)
            form = {
                "grant_type": "refresh_token",
                "client_id": str(info["client_id"]),
                "client_secret": str(info["client_secret"]),
                "refresh_token": str(info["refresh_token"]),
            }
            return await _request(session, "POST", token_uri, data=form)
        return await _request(session, "GET", self.metadata_url, headers={"Metadata-Flavor": "Google"})


def _signed_assertion(info: dict[str, Any], token_uri: str) -> str:
    now = int(time.time())
    claims = {
        "iss": info["client_email"],
        "scope": CLOUD_PLATFORM_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    }
    headers = {"kid": str(info["private_key_id"])} if info.get("private_key_id") else None
    try:
        return jwt.encode(claims, str(info["private_key"]), algorithm="RS256", headers=headers)
    except (ValueError, TypeError, jwt.PyJWTError):
        raise ProviderError(
            "the Vertex service account private key cannot be used; an admin must update the service",
            error_class=ErrorClass.POLICY,
            code="invalid_credentials",
        ) from None


async def _request(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        async with session.request(method, url, **kwargs) as resp:
            raw = await read_bounded(resp, MAX_ERROR_BODY_BYTES)  # token answers are tiny
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise provider_error_from_exception(exc, _PROVIDER) from None
    if status in (400, 401, 403):
        # Google answers invalid_grant for a revoked key, a wrong clock or a deleted account.
        raise ProviderError(
            f"{_PROVIDER} rejected the Vertex credentials (HTTP {status}); an admin must update the service",
            status=status,
            error_class=ErrorClass.POLICY,
            code="invalid_credentials",
        )
    if status >= 300:
        raise ProviderError(
            f"{_PROVIDER} is unavailable (HTTP {status}); try again", status=status, retryable=status >= 500
        )
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ProviderError(f"{_PROVIDER} sent a malformed token response", code="invalid_token_response")
    return doc
