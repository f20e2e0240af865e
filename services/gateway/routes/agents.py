"""Agent management routes: /agents, /agents/{agentid}, its avatar, and model listing for a service."""

from __future__ import annotations

from typing import Any

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import BadHttpMessage

from services.common.errors import InvalidInput
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import read_json
from services.gateway.proto_json import from_json, to_json
from services.gateway.routes.guards import triggers_of
from services.gateway.routes.mcp import available_mcp_tools

routes = web.RouteTableDef()

MAX_AGENT_BODY = 512 * 1024
MAX_AVATAR_BYTES = 10 * 1024 * 1024
# Left out of a create request, these take the defaults of the service's provider.
PROVIDER_DEFAULTED = ("enabledNativeTools", "structuredOutputEnabled", "reasoningEnabled", "mcpDynamicToolLoading")
# Sent back by clients but assigned by the server.
SERVER_FIELDS = ("id", "botUserID", "creatorID", "createAt", "updateAt", "deleteAt", "lastIconUpdate", "service")


def agent_json(agent: registry_pb2.Agent, *, show_instructions: bool = True) -> dict[str, Any]:
    """The plugin's BotConfig."""
    body = to_json(agent)
    if not show_instructions:
        body["customInstructions"] = ""
    return body


def _agent_from_body(payload: Any) -> registry_pb2.Agent:
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in SERVER_FIELDS}
    return from_json(payload, registry_pb2.Agent(), "agent")


@routes.get("/agents")
async def list_agents(request: web.Request) -> web.Response:
    """The agents the caller may manage or use; unlicensed, ``X-Agent-Active-Count`` too."""
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.ListAgents, registry_pb2.ListAgentsRequest())
    headers = {}
    if response.license == registry_pb2.LICENSE_NONE:
        headers["X-Agent-Active-Count"] = str(response.active_count)
    return web.json_response([agent_json(a) for a in response.agents], headers=headers)


@routes.post("/agents")
async def create_agent(request: web.Request) -> web.Response:
    """Create an agent (201), answered once this replica listens for its bot."""
    deps = request.app[DEPS]
    payload = await read_json(request, max_bytes=MAX_AGENT_BODY)
    agent = _agent_from_body(payload)
    defaulted = [k for k in PROVIDER_DEFAULTED if k not in payload]
    response = await unary(
        deps.backends.registry.CreateAgent, registry_pb2.CreateAgentRequest(agent=agent, defaulted_fields=defaulted)
    )
    # Answered once this replica listens for the new bot: a DM sent right after is answered.
    await deps.directory.changed()
    await triggers_of(request).wait_listening(response.agent.bot_user_id)
    return web.json_response(agent_json(response.agent), status=201)


@routes.post("/agents/models/fetch")
async def fetch_models_for_service(request: web.Request) -> web.Response:
    """The models of a saved service (``serviceID``) the caller may see."""
    deps = request.app[DEPS]
    payload = await read_json(request)
    service_id = payload.get("serviceID") if isinstance(payload, dict) else None
    if not isinstance(service_id, str) or not service_id:
        raise InvalidInput("serviceID is required", field="serviceID")
    # GetService applies the services permission and answers 404 for an unknown id.
    await unary(deps.backends.registry.GetService, registry_pb2.GetServiceRequest(id=service_id))
    response = await unary(deps.backends.llm.ListModels, llm_pb2.ListModelsRequest(service_id=service_id))
    return web.json_response([{"id": m, "displayName": m} for m in response.model_ids])


@routes.get("/agents/{agentid}")
async def get_agent(request: web.Request) -> web.Response:
    """One agent; its instructions blanked unless the caller may manage it."""
    deps = request.app[DEPS]
    response = await unary(
        deps.backends.registry.GetAgent, registry_pb2.GetAgentRequest(id=request.match_info["agentid"])
    )
    return web.json_response(agent_json(response.agent, show_instructions=response.can_manage))


@routes.put("/agents/{agentid}")
async def update_agent(request: web.Request) -> web.Response:
    """Replace an agent; 409 when the body's ``updateAt`` is not the stored one (an edit in between)."""
    deps = request.app[DEPS]
    payload = await read_json(request, max_bytes=MAX_AGENT_BODY)
    agent = _agent_from_body(payload)
    agent.id = request.match_info["agentid"]
    # A client that sends the updateAt it loaded gets 409 instead of overwriting a newer edit.
    expected = payload.get("updateAt") if isinstance(payload, dict) else 0
    response = await unary(
        deps.backends.registry.UpdateAgent,
        registry_pb2.UpdateAgentRequest(
            agent=agent,
            expected_update_at=expected if isinstance(expected, int) else 0,
            available_mcp_tools=await available_mcp_tools(request, agent.enabled_mcp_tools),
        ),
    )
    deps.bridge_agents.invalidate()  # this replica's bridge sees the edit at once
    await deps.directory.changed()
    body = agent_json(response.agent)
    if response.dropped_mcp_tools:
        body["droppedMCPTools"] = [
            {"server_origin": t.server_origin, "tool_name": t.tool_name} for t in response.dropped_mcp_tools
        ]
    return web.json_response(body)


@routes.delete("/agents/{agentid}")
async def delete_agent(request: web.Request) -> web.Response:
    """Delete an agent; this replica forgets it at once."""
    deps = request.app[DEPS]
    await unary(deps.backends.registry.DeleteAgent, registry_pb2.DeleteAgentRequest(id=request.match_info["agentid"]))
    deps.bridge_agents.invalidate()
    await deps.directory.changed()
    return web.Response(status=200)


@routes.post("/agents/{agentid}/avatar")
async def upload_avatar(request: web.Request) -> web.Response:
    """Set an agent's avatar from the ``image`` part of a multipart body."""
    deps = request.app[DEPS]
    agent_id = request.match_info["agentid"]
    # An unknown agent is a 404 whatever the body holds.
    await unary(deps.backends.registry.GetAgent, registry_pb2.GetAgentRequest(id=agent_id))
    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("expected a multipart/form-data body with an image field", field="image")
    try:
        image, filename = await _image_part(await request.multipart())
    except (ValueError, BadHttpMessage) as exc:
        # aiohttp's complaint: a missing or invalid boundary, malformed part headers, a cut-off body.
        reason = exc.message if isinstance(exc, BadHttpMessage) else str(exc)
        raise InvalidInput(f"the body is not valid multipart/form-data: {reason}", field="image") from None
    if not image:
        raise InvalidInput("the image field is required", field="image")
    await unary(
        deps.backends.registry.SetAgentAvatar,
        registry_pb2.SetAgentAvatarRequest(agent_id=agent_id, image=image, filename=filename),
    )
    return web.Response(status=200)


async def _image_part(reader: MultipartReader) -> tuple[bytes, str]:
    """The ``image`` part's bytes and file name; empty bytes when there is none."""
    async for part in reader:
        # A nested multipart part (a MultipartReader) has no name: never the image.
        if not isinstance(part, BodyPartReader) or part.name != "image":
            continue
        filename = part.filename or "avatar.png"
        chunks, size = [], 0
        while chunk := await part.read_chunk(64 * 1024):
            size += len(chunk)
            if size > MAX_AVATAR_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_AVATAR_BYTES, actual_size=size)
            chunks.append(chunk)
        return b"".join(chunks), filename
    return b"", ""
