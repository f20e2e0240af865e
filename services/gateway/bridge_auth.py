"""Who may call the inter-plugin bridge (``/bridge/v1``): another Mattermost plugin.

In the plugin, Mattermost itself sets ``Mattermost-Plugin-ID`` on plugin-to-plugin ``PluginHTTP``
calls (and strips it from outside requests), so the header alone is the guard. Outside
Mattermost a header is just a header, so each auth mode adds proof that Mattermost vouched for it:

- trusted_proxy: the Mattermost-side shim forwards the plugin's call with its HMAC signature
  (the same scheme as user requests; the signed user id is ``Mattermost-User-Id`` when the shim
  sends one and "" for a plugin acting for itself). An unsigned ``Mattermost-Plugin-ID`` is
  refused, exactly like an unsigned ``Mattermost-User-Id``.
- session: the calling plugin presents a Mattermost token (its bot's or a user's) which is
  validated against ``/api/v4/users/me`` like any session, plus the header.

Either way the bridge runs its gRPC calls as the cluster (no user identity): the bridge's own
``user_id`` field, when given, drives the access checks explicitly, as in the plugin.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from aiohttp import web

from services.common.errors import Unauthenticated
from services.gateway.auth import (
    PLUGIN_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    USER_ID_HEADER,
    sign_request,
)
from services.gateway.middleware import CALLER_KEY

MISSING_PLUGIN_ID = "the bridge API is for Mattermost plugins: the Mattermost-Plugin-ID header is required"


@dataclass(frozen=True)
class PluginCaller:
    plugin_id: str


async def authenticate_plugin(request: web.Request) -> PluginCaller:
    """The calling plugin, or ``Unauthenticated`` (401)."""
    plugin_id = request.headers.get(PLUGIN_ID_HEADER, "").strip()
    if not plugin_id:
        raise Unauthenticated(MISSING_PLUGIN_ID)
    authenticator = request.app[CALLER_KEY]
    settings = authenticator.settings
    if settings.auth_mode == "trusted_proxy":
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not timestamp or not signature:
            raise Unauthenticated("unsigned request: Mattermost-Plugin-ID is only accepted from the signing proxy")
        try:
            skew = abs(time.time() - int(timestamp))
        except ValueError:
            raise Unauthenticated("invalid request timestamp") from None
        if skew > settings.proxy_max_skew_seconds:
            raise Unauthenticated("request timestamp outside the allowed clock skew")
        user_id = request.headers.get(USER_ID_HEADER, "")
        expected = sign_request(
            settings.proxy_shared_secret, timestamp, request.method, request.rel_url.path_qs, user_id
        )
        if not hmac.compare_digest(expected, signature):
            raise Unauthenticated("invalid request signature")
    else:
        await authenticator.authenticate(request)  # a valid Mattermost token, or 401
    return PluginCaller(plugin_id)
