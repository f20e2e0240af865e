"""The aiohttp application: the plugin's routes under /plugins/mattermost-ai, plus probes."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from services.common.telemetry import http_server_middleware
from services.gateway.bridge import routes as bridge_routes
from services.gateway.deps import DEPS, GatewayDeps
from services.gateway.metrics import HttpMetrics
from services.gateway.middleware import CALLER_KEY, auth_middleware, errors_middleware, parameters_middleware
from services.gateway.routes import admin_config, bots, custom_prompts
from services.gateway.routes import agents as agent_routes
from services.gateway.routes import channels as channel_routes
from services.gateway.routes import conversations as conversation_routes
from services.gateway.routes import files as file_routes
from services.gateway.routes import mcp as mcp_routes
from services.gateway.routes import mcp_server as mcp_server_routes
from services.gateway.routes import meetings as meeting_routes
from services.gateway.routes import post_actions as post_action_routes
from services.gateway.routes import posts as post_routes
from services.gateway.routes import search as search_routes
from services.gateway.routes import services as service_routes

PLUGIN_PREFIX = "/plugins/mattermost-ai"
# Every module serving plugin routes (each holds a ``routes`` table).
ROUTE_MODULES = (
    bots,
    agent_routes,
    service_routes,
    admin_config,
    custom_prompts,
    bridge_routes,
    post_routes,
    post_action_routes,
    meeting_routes,
    file_routes,
    channel_routes,
    conversation_routes,
    search_routes,
    mcp_routes,
    mcp_server_routes,
)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP (readiness is ``/readyz``)."""
    return web.json_response({"status": "ok"})


def create_app(deps: GatewayDeps, registry: CollectorRegistry) -> web.Application:
    """The root application: ``/healthz``, and the plugin's routes under its prefix behind the error,
    authentication and parameter middlewares, counted in the HTTP metrics on ``registry``."""
    plugin = web.Application(
        middlewares=[errors_middleware, auth_middleware, parameters_middleware],
        client_max_size=deps.settings.max_body_bytes,
    )
    plugin[DEPS] = deps
    plugin[CALLER_KEY] = deps.authenticator
    plugin["max_body_bytes"] = deps.settings.max_body_bytes
    for module in ROUTE_MODULES:
        plugin.add_routes(module.routes)

    # On the root: a path under the prefix that no plugin route matches never reaches the sub-app.
    # The server span outermost: it sees the final status, and the sub-app's requests need no second one.
    root = web.Application(
        middlewares=[http_server_middleware(), HttpMetrics(registry, PLUGIN_PREFIX).middleware, errors_middleware]
    )
    root[DEPS] = deps
    root.router.add_get("/healthz", healthz)
    root.add_subapp(PLUGIN_PREFIX, plugin)
    return root
