"""Admin routes replacing the System Console page: the plugin configuration and model listing
with unsaved credentials. The registry refuses non-admins (403)."""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web
from google.protobuf.message import Message

from services.common.errors import InvalidInput
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import read_json
from services.gateway.proto_json import from_json, to_json
from services.gateway.routes.guards import require_admin

routes = web.RouteTableDef()

# The body of POST /admin/models/fetch (plugin-openapi.yaml AgentsPluginFetchModelsRequest).
CREDENTIAL_FIELDS = (
    "serviceType",
    "apiKey",
    "apiURL",
    "orgID",
    "region",
    "vertexProjectID",
    "vertexProjectNumber",
    "vertexAuthCredentials",
)


def with_every_section(message: Message) -> Message:
    """``message`` with each nested object present, empty when unset.

    The plugin's Config holds its sections (``embeddingSearchConfig``, ``webSearch``,
    ``mcp.embeddedServer``, ...) as Go value structs, so its JSON always carries them and the admin
    console reads ``config.webSearch.provider`` without a guard; protobuf leaves unset ones out.
    """
    for field in message.DESCRIPTOR.fields:
        if (
            field.message_type is None
            or field.is_repeated
            or field.message_type.full_name.startswith("google.protobuf.")  # raw JSON: absent stays absent
        ):
            continue
        child = getattr(message, field.name)
        child.SetInParent()
        with_every_section(child)
    return message


def require_listing_credentials(service_type: str, values: dict[str, str]) -> None:
    """The plugin's rules for listing models with unsaved credentials; InvalidInput names the field."""
    if not service_type:
        raise InvalidInput("serviceType is required", field="serviceType")
    if service_type == "openaicompatible":
        if not values["apiKey"] and not values["apiURL"]:
            raise InvalidInput("apiKey or apiURL is required for openaicompatible services", field="apiKey")
    elif service_type == "vertex":
        for name in ("vertexProjectID", "region"):
            if not values[name]:
                raise InvalidInput(f"{name} is required for vertex services", field=name)
    elif not values["apiKey"]:
        raise InvalidInput(f"apiKey is required for {service_type} services", field="apiKey")


@routes.get("/admin/config")
async def get_config(request: web.Request) -> web.Response:
    """The plugin configuration, every section present, secrets masked by the registry."""
    require_admin(request)
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.GetPluginConfig, registry_pb2.GetPluginConfigRequest())
    return web.json_response(to_json(with_every_section(response.config)))


@routes.put("/admin/config")
async def save_config(request: web.Request) -> web.Response:
    """Replace the plugin configuration (the registry validates it)."""
    require_admin(request)
    deps = request.app[DEPS]
    config = from_json(await read_json(request), registry_pb2.PluginConfig(), "configuration")
    await unary(deps.backends.registry.UpdatePluginConfig, registry_pb2.UpdatePluginConfigRequest(config=config))
    return web.Response(status=200)


@routes.post("/admin/models/fetch")
async def fetch_models(request: web.Request) -> web.Response:
    """The models a service offers with the credentials in the body, before they are saved."""
    require_admin(request)
    deps = request.app[DEPS]
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object with serviceType and credentials")

    values: dict[str, str] = {}
    for name in CREDENTIAL_FIELDS:
        value = payload.get(name, "")
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", field=name)
        values[name] = value.strip()
    require_listing_credentials(values["serviceType"], values)
    credentials = llm_pb2.ServiceCredentials(
        type=values["serviceType"],
        api_key=values["apiKey"],
        api_url=values["apiURL"],
        org_id=values["orgID"],
        region=values["region"],
        vertex_project_id=values["vertexProjectID"],
        vertex_project_number=values["vertexProjectNumber"],
        vertex_auth_credentials=values["vertexAuthCredentials"],
    )
    response = await unary(deps.backends.llm.ListModels, llm_pb2.ListModelsRequest(credentials=credentials))
    return web.json_response([{"id": m, "displayName": m} for m in response.model_ids])
