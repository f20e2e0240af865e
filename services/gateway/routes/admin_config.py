"""Admin routes replacing the System Console page: the plugin configuration and model listing
with unsaved credentials. The registry refuses non-admins (403)."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.errors import InvalidInput, PermissionDenied
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json
from services.gateway.proto_json import from_json, to_json

routes = web.RouteTableDef()


def _require_admin(request: web.Request) -> None:
    # Also checked by the registry; refusing here keeps non-admins away from the llm service too.
    if not caller_of(request).identity.is_system_admin:
        raise PermissionDenied("only system admins may use the admin routes")


@routes.get("/admin/config")
async def get_config(request: web.Request) -> web.Response:
    _require_admin(request)
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.GetPluginConfig, registry_pb2.GetPluginConfigRequest())
    return web.json_response(to_json(response.config))


@routes.put("/admin/config")
async def save_config(request: web.Request) -> web.Response:
    _require_admin(request)
    deps = request.app[DEPS]
    config = from_json(await read_json(request), registry_pb2.PluginConfig(), "configuration")
    await unary(deps.backends.registry.UpdatePluginConfig, registry_pb2.UpdatePluginConfigRequest(config=config))
    return web.Response(status=200)


@routes.post("/admin/models/fetch")
async def fetch_models(request: web.Request) -> web.Response:
    _require_admin(request)
    deps = request.app[DEPS]
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object with serviceType and credentials")

    def field(name: str) -> str:
        value = payload.get(name, "")
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", field=name)
        return value

    credentials = llm_pb2.ServiceCredentials(
        type=field("serviceType"),
        api_key=field("apiKey"),
        api_url=field("apiURL"),
        org_id=field("orgID"),
        region=field("region"),
        vertex_project_id=field("vertexProjectID"),
        vertex_project_number=field("vertexProjectNumber"),
        vertex_auth_credentials=field("vertexAuthCredentials"),
    )
    response = await unary(deps.backends.llm.ListModels, llm_pb2.ListModelsRequest(credentials=credentials))
    return web.json_response([{"id": m, "displayName": m} for m in response.model_ids])
