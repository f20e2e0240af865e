"""Custom prompt routes: CRUD, pins and rendering with the caller's context."""

from __future__ import annotations

import time
from typing import Any

from agents.registry.v1 import registry_pb2 as registry_pb2
from aiohttp import web

from services.common.errors import InvalidInput, NotFound, PermissionDenied
from services.common.grpc_client import unary
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json
from services.gateway.prompt_template import render_template
from services.gateway.proto_json import to_json
from services.gateway.request_input import check_optional_mattermost_id

routes = web.RouteTableDef()


def _fields(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object")
    out: dict[str, Any] = {}
    for key in ("name", "description", "template"):
        value = payload.get(key, "")
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string", field=key)
        out[key] = value
    shared = payload.get("is_shared", False)
    if not isinstance(shared, bool):
        raise InvalidInput("is_shared must be a boolean", field="is_shared")
    out["is_shared"] = shared
    return out


def prompt_json(prompt: registry_pb2.CustomPrompt) -> dict[str, Any]:
    """The plugin's JSON of a custom prompt."""
    return {**to_json(prompt), "deleted_at": 0}


@routes.post("/custom-prompts")
async def create_prompt(request: web.Request) -> web.Response:
    """Create a custom prompt (201)."""
    deps = request.app[DEPS]
    fields = _fields(await read_json(request))
    response = await unary(deps.backends.registry.CreateCustomPrompt, registry_pb2.CreateCustomPromptRequest(**fields))
    return web.json_response(prompt_json(response.prompt), status=201)


@routes.get("/custom-prompts")
async def list_prompts(request: web.Request) -> web.Response:
    """The custom prompts the caller can see."""
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.ListCustomPrompts, registry_pb2.ListCustomPromptsRequest())
    return web.json_response([prompt_json(p) for p in response.prompts])


@routes.get("/custom-prompts/pins")
async def list_pins(request: web.Request) -> web.Response:
    """The ids of the prompts the caller pinned."""
    deps = request.app[DEPS]
    response = await unary(deps.backends.registry.ListPinnedPrompts, registry_pb2.ListPinnedPromptsRequest())
    return web.json_response(list(response.prompt_ids))


@routes.put("/custom-prompts/pins")
async def set_pin(request: web.Request) -> web.Response:
    """Pin or unpin a prompt for the caller."""
    deps = request.app[DEPS]
    payload = await read_json(request)
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt_id"), str) or not payload["prompt_id"]:
        raise InvalidInput("prompt_id is required", field="prompt_id")
    pinned = payload.get("pinned", False)
    if not isinstance(pinned, bool):
        raise InvalidInput("pinned must be a boolean", field="pinned")
    await unary(
        deps.backends.registry.SetPromptPin,
        registry_pb2.SetPromptPinRequest(prompt_id=payload["prompt_id"], pinned=pinned),
    )
    return web.Response(status=200)


@routes.put("/custom-prompts/{id}")
async def update_prompt(request: web.Request) -> web.Response:
    """Replace a custom prompt (204)."""
    deps = request.app[DEPS]
    fields = _fields(await read_json(request))
    await unary(
        deps.backends.registry.UpdateCustomPrompt,
        registry_pb2.UpdateCustomPromptRequest(id=request.match_info["id"], **fields),
    )
    return web.Response(status=204)


@routes.delete("/custom-prompts/{id}")
async def delete_prompt(request: web.Request) -> web.Response:
    """Delete a custom prompt (204)."""
    deps = request.app[DEPS]
    await unary(
        deps.backends.registry.DeleteCustomPrompt, registry_pb2.DeleteCustomPromptRequest(id=request.match_info["id"])
    )
    return web.Response(status=204)


@routes.post("/custom-prompts/{id}/render")
async def render_prompt(request: web.Request) -> web.Response:
    """A prompt's template filled in with the caller, the agent and the channel the body names."""
    deps = request.app[DEPS]
    user = caller_of(request).user
    payload = await read_json(request)
    if not isinstance(payload, dict):
        raise InvalidInput("expected a JSON object")
    channel_id, bot_username = payload.get("channel_id", ""), payload.get("bot_username", "")
    if not isinstance(channel_id, str) or not isinstance(bot_username, str):
        raise InvalidInput("channel_id and bot_username must be strings")
    check_optional_mattermost_id(channel_id, "channel_id")
    prompt = (
        await unary(
            deps.backends.registry.GetCustomPrompt, registry_pb2.GetCustomPromptRequest(id=request.match_info["id"])
        )
    ).prompt
    variables = {
        "Time": time.strftime("%A, %B %d, %Y %H:%M %Z", time.gmtime()),
        "Username": user.username,
        "FirstName": user.first_name,
        "LastName": user.last_name,
        "BotName": "",
        "Channel": "",
        "ChannelName": "",
        "Team": "",
        "TeamName": "",
    }
    if bot_username:
        agent = await unary(deps.backends.registry.GetAgent, registry_pb2.GetAgentRequest(username=bot_username))
        variables["BotName"] = agent.agent.display_name or agent.agent.username
    if channel_id:
        if not await deps.mattermost.user_can_read_channel(user.id, channel_id):
            raise PermissionDenied("you cannot read that channel")
        channel = await deps.mattermost.get_channel(channel_id)
        variables["Channel"], variables["ChannelName"] = channel.display_name, channel.name
        if channel.team_id:
            try:
                team = await deps.mattermost.get_team(channel.team_id)
                variables["Team"], variables["TeamName"] = team.display_name, team.name
            except NotFound:
                pass
    return web.json_response({"rendered": render_template(prompt.template, variables)})
