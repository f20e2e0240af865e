"""GET /services: the configured LLM services, without secrets or endpoints."""

from __future__ import annotations

from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.grpc_client import unary
from services.gateway.deps import DEPS

routes = web.RouteTableDef()


@routes.get("/services")
async def list_services(request: web.Request) -> web.Response:
    """The LLM services, without secrets or endpoints, for callers who may manage agents."""
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.ListServices, registry_pb2.ListServicesRequest())
    return web.json_response(
        [
            {
                "id": s.id,
                "name": s.name,
                "type": s.type,
                "defaultModel": s.default_model,
                "outputTokenLimit": s.output_token_limit,
                "useResponsesAPI": s.use_responses_api,
            }
            for s in response.services
        ]
    )
