"""Who calls the inter-plugin bridge (``/bridge/v1``), and for which user.

In the plugin, Mattermost itself sets ``Mattermost-Plugin-ID`` on plugin-to-plugin ``PluginHTTP``
calls (and strips it from outside requests), so the header alone is the guard. Outside
Mattermost a header is just a header: anyone can send it. So the header is still required (the
plugin's contract), but a caller is a plugin only with proof a user cannot forge:

- trusted_proxy: the shim's HMAC signature (the same scheme as user requests). Signed without
  ``Mattermost-User-Id`` it is a plugin acting for itself; signed with one, the request acts as
  that user (the shim vouches for the user, not for who added the plugin header).
- session: the plugin's credential, issued by the admin (``bridge_plugin_secrets``) and sent as
  ``X-Agents-Plugin-Secret``. Without it the request must carry a Mattermost session token, and
  acts as the token's user.

A proven plugin names the user its access checks are for (the request's ``user_id``), as in the
plugin; a request acting as a user may only name that user (``PermissionDenied`` otherwise), and
the user's own rules apply when it names nobody. Either way the bridge's gRPC calls run as the
cluster: the user is passed explicitly to the access checks.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from aiohttp import web

from services.common.errors import PermissionDenied, Unauthenticated
from services.gateway.auth import PLUGIN_ID_HEADER, USER_ID_HEADER
from services.gateway.middleware import CALLER_KEY

PLUGIN_SECRET_HEADER = "X-Agents-Plugin-Secret"
MISSING_PLUGIN_ID = "the bridge API is for Mattermost plugins: the Mattermost-Plugin-ID header is required"


@dataclass(frozen=True)
class BridgeCaller:
    """A proven bridge caller: the plugin, and the user it acts as when it is a user's request."""

    plugin_id: str
    # The user the request is proven to act as; "" for a proven plugin.
    user_id: str = ""

    def acting_for(self, named_user_id: str) -> str:
        """The user whose access rules apply when the request names ``named_user_id`` ("" for
        nobody): "" means a plugin acting for itself, which the plugin checks nothing for."""
        if not self.user_id:
            return named_user_id
        if named_user_id and named_user_id != self.user_id:
            raise PermissionDenied(
                "a user's own credentials act for that user only: user_id must be omitted or be the caller's id;"
                " plugins acting for other users authenticate as the plugin"
            )
        return self.user_id


async def authenticate_bridge_caller(request: web.Request) -> BridgeCaller:
    """The caller, or ``Unauthenticated`` (401)."""
    plugin_id = request.headers.get(PLUGIN_ID_HEADER, "").strip()
    if not plugin_id:
        raise Unauthenticated(MISSING_PLUGIN_ID)
    authenticator = request.app[CALLER_KEY]
    settings = authenticator.settings
    if settings.auth_mode == "trusted_proxy":
        if not request.headers.get(USER_ID_HEADER):
            authenticator.verify_signature(request, "", PLUGIN_ID_HEADER)
            return BridgeCaller(plugin_id)
        # Signed for a user: checked below exactly as that user's other requests are.
    elif PLUGIN_SECRET_HEADER in request.headers:
        # A credential that fails is a 401 even beside a valid session token: it is never
        # silently downgraded to the token's user.
        presented = request.headers[PLUGIN_SECRET_HEADER].encode(errors="surrogateescape")
        expected = settings.bridge_plugin_secrets.get(plugin_id, "").encode()
        if not expected or not hmac.compare_digest(expected, presented):
            raise Unauthenticated(f"invalid plugin credential ({PLUGIN_SECRET_HEADER}) for this Mattermost-Plugin-ID")
        return BridgeCaller(plugin_id)
    caller = await authenticator.authenticate(request)  # the user's own proof, or 401
    return BridgeCaller(plugin_id, caller.user.id)
