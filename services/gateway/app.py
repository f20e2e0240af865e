"""The aiohttp application: the plugin's routes under /plugins/mattermost-ai, plus probes."""

from __future__ import annotations

from aiohttp import web

from services.gateway.deps import DEPS, GatewayDeps
from services.gateway.middleware import CALLER_KEY, auth_middleware, errors_middleware
from services.gateway.routes import bots

PLUGIN_PREFIX = "/plugins/mattermost-ai"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(deps: GatewayDeps) -> web.Application:
    plugin = web.Application(
        middlewares=[errors_middleware, auth_middleware], client_max_size=deps.settings.max_body_bytes
    )
    plugin[DEPS] = deps
    plugin[CALLER_KEY] = deps.authenticator
    plugin["max_body_bytes"] = deps.settings.max_body_bytes
    plugin.add_routes(bots.routes)

    root = web.Application(middlewares=[errors_middleware])
    root[DEPS] = deps
    root.router.add_get("/healthz", healthz)
    root.add_subapp(PLUGIN_PREFIX, plugin)
    return root
