"""The inter-plugin LLM bridge (``/bridge/v1``, plugin-api.md 1.4): agents, services and
completions for other Mattermost plugins, streamed as SSE or collected.

Guard: ``auth.authenticate_bridge_caller`` (Mattermost-Plugin-ID plus proof of a plugin, or
of the user the request then acts as). Calls to the registry and the llm service run as the
cluster; the user the request acts for is checked explicitly against the agent's access rules.
Errors before the first event are plain JSON errors with the mapped HTTP status; after the stream
started they arrive as a Type 2 event followed by Type 1, and the stream ends.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace

import orjson
from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.tools.v1 import tools_pb2 as tools_pb2
from aiohttp import web

from services.common.errors import (
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unimplemented,
    UpstreamUnavailable,
)
from services.common.grpc_client import stream, unary
from services.common.identity import SYSTEM, current_identity
from services.common.structured_output import sends_json_schema
from services.gateway.bridge.auth import BridgeCaller, authenticate_bridge_caller
from services.gateway.bridge.events import (
    END,
    ERROR,
    EventRenderer,
    FenceStripper,
    completion_request,
    parse_bridge_request,
)
from services.gateway.bridge.files import attach_files
from services.gateway.deps import DEPS, GatewayDeps
from services.gateway.middleware import read_json

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()

# Longest a bridge completion may run (the plugin's upstream HTTP timeout is 10 minutes).
COMPLETION_TIMEOUT_SECONDS = 600.0
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _enter(request: web.Request) -> tuple[GatewayDeps, BridgeCaller]:
    """Authenticate the caller and run the rest of the handler as the cluster."""
    caller = await authenticate_bridge_caller(request)
    current_identity.set(SYSTEM)  # the handler's own context: reset when the request ends
    return request.app[DEPS], caller


# ---- listings -------------------------------------------------------------------------------


async def _visible_agents(deps: GatewayDeps, user_id: str) -> list[registry_pb2.Agent]:
    """Every active agent (oldest first), or those ``user_id`` may use."""
    # ListAgents, not ListUsableAgents: that one applies the user rules to its caller, and the
    # bridge calls as the cluster (no user), naming the user it acts for instead.
    teams = await deps.team_ids_of(user_id) if user_id else []
    request = registry_pb2.ListAgentsRequest(usable_by_user_id=user_id, user_team_ids=teams)
    return list((await unary(deps.backends.registry.ListAgents, request)).agents)


async def _services(deps: GatewayDeps, ids: list[str]) -> dict[str, registry_pb2.ServiceConfig]:
    found: dict[str, registry_pb2.ServiceConfig] = {}
    for service_id in dict.fromkeys(ids):
        try:
            reply = await unary(deps.backends.registry.GetService, registry_pb2.GetServiceRequest(id=service_id))
        except NotFound:
            continue  # an agent pointing at a deleted service: listed without a type
        found[service_id] = reply.service
    return found


@routes.get("/bridge/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    """``GET /bridge/v1/agents``: the agents the named user (or the plugin) may use, with their services."""
    deps, caller = await _enter(request)
    agents = await _visible_agents(deps, caller.acting_for(request.query.get("user_id", "")))
    # defaultBotName from the registry itself: this gateway's configuration watch may not have
    # received its first configuration yet.
    usable = await unary(deps.backends.registry.ListUsableAgents, registry_pb2.ListUsableAgentsRequest())
    default = usable.default_agent_username
    services = await _services(deps, [a.service_id for a in agents])
    body = [
        {
            "id": a.bot_user_id,
            "displayName": a.display_name,
            "username": a.username,
            "service_id": a.service_id,
            "service_type": services[a.service_id].type if a.service_id in services else "",
            "is_default": a.username == default,
        }
        for a in sorted(agents, key=lambda a: a.display_name.lower())
    ]
    return web.json_response({"agents": body})


@routes.get("/bridge/v1/services")
async def list_services(request: web.Request) -> web.Response:
    """``GET /bridge/v1/services``: the services of the agents the named user (or the plugin) may use."""
    deps, caller = await _enter(request)
    agents = await _visible_agents(deps, caller.acting_for(request.query.get("user_id", "")))
    services = await _services(deps, [a.service_id for a in agents])
    return web.json_response({"services": [{"id": s.id, "name": s.name, "type": s.type} for s in services.values()]})


# ---- completions ----------------------------------------------------------------------------


@routes.get("/bridge/v1/agents/{agent}/tools")
async def agent_tools(request: web.Request) -> web.Response:
    """``GET /bridge/v1/agents/{agent}/tools``: the agent's MCP tools for the named user.

    Remote tools run as a user (their session, their grants), so without ``user_id`` there are none.
    """
    deps, caller = await _enter(request)
    user_id = caller.acting_for(request.query.get("user_id", ""))
    agent = await deps.bridge_agents.resolve(request.match_info["agent"])
    if not user_id or agent.disable_tools:
        return web.json_response({"tools": []})
    await _check_access(deps, agent, user_id, "")
    # As in a DM with the agent: the tools it may use at all, whatever a channel would allow.
    context = tools_pb2.ToolContext(user_id=user_id, agent_id=agent.id, is_direct_message=True)
    reply = await unary(deps.backends.tools.ListTools, tools_pb2.ListToolsRequest(context=context))
    tools = [
        {"name": t.name, "description": t.description, "server_origin": t.server_origin}
        for t in reply.tools
        if t.server_origin
    ]
    return web.json_response({"tools": tools})


async def _agent_for_service(deps: GatewayDeps, service: str) -> registry_pb2.Agent:
    """The first agent whose service has this id or name (the plugin's rule)."""
    agents = await _visible_agents(deps, "")
    for agent in agents:
        if agent.service_id == service:
            return agent
    services = await _services(deps, [a.service_id for a in agents])
    for agent in agents:
        config = services.get(agent.service_id)
        if config is not None and config.name == service:
            return agent
    raise NotFound(f"no agent uses service {service}")


async def _check_access(deps: GatewayDeps, agent: registry_pb2.Agent, user_id: str, channel_id: str) -> None:
    if not user_id:
        return  # the plugin checks permissions only when the calling plugin names a user
    teams = await deps.team_ids_of(user_id)
    check = await unary(
        deps.backends.registry.CheckAgentAccess,
        registry_pb2.CheckAgentAccessRequest(
            agent_id=agent.id, user_id=user_id, channel_id=channel_id, user_team_ids=teams
        ),
    )
    if not check.allowed:
        raise PermissionDenied(check.reason or f"the user may not use agent {agent.username}")


async def _sends_json_schema(deps: GatewayDeps, agent: registry_pb2.Agent) -> bool:
    """The agent's Structured Output setting as its provider allows it (the guide's rules)."""
    service = (await _services(deps, [agent.service_id])).get(agent.service_id)
    return service is not None and sends_json_schema(
        service.type,
        structured_output_enabled=agent.structured_output_enabled,
        reasoning_enabled=agent.reasoning_enabled,
    )


async def _prepare(
    request: web.Request, *, by_service: bool
) -> tuple[GatewayDeps, llm_pb2.StreamCompleteRequest, bool]:
    """The llm request (with the tools it may run), and whether the answer's JSON fences are to
    be stripped (the plugin's fallback when a schema was asked for but does not reach the provider)."""
    deps, caller = await _enter(request)
    bridge = parse_bridge_request(await read_json(request))
    bridge = replace(bridge, user_id=caller.acting_for(bridge.user_id))
    if by_service and (bridge.allowed_tools or bridge.has_tool_hooks):
        raise InvalidInput("allowed_tools is not allowed for service completions", field="allowed_tools")
    if bridge.has_tool_hooks and not bridge.allowed_tools:
        raise InvalidInput("tool_hooks require allowed_tools", field="tool_hooks")
    if bridge.allowed_tools and not bridge.user_id:
        raise InvalidInput("allowed_tools require user_id", field="user_id")
    if bridge.has_tool_hooks:
        raise Unimplemented("tool_hooks are not available yet; omit them to run the allowed tools without hooks")
    if by_service:
        agent = await _agent_for_service(deps, request.match_info["service"])
    else:
        agent = await deps.bridge_agents.resolve(request.match_info["agent"])
    await _check_access(deps, agent, bridge.user_id, bridge.channel_id)
    await attach_files(deps.mattermost, bridge, agent)
    native = bridge.json_output_format is not None and await _sends_json_schema(deps, agent)
    completion = completion_request(
        bridge, agent, operation="bridge_service" if by_service else "bridge_agent", send_json_schema=native
    )
    if bridge.channel_id:
        # The team the usage is attributed to (token usage log, metrics), as the plugin does.
        completion.team_id = (await deps.mattermost.get_channel(bridge.channel_id)).team_id
    llm_request = llm_pb2.StreamCompleteRequest(request=completion)
    if bridge.allowed_tools:
        llm_request.tools.CopyFrom(llm_pb2.CompletionTools(agent_id=agent.id, allowed_tools=bridge.allowed_tools))
    return deps, llm_request, bridge.json_output_format is not None and not native


def _events(
    deps: GatewayDeps, llm_request: llm_pb2.StreamCompleteRequest
) -> AsyncGenerator[llm_pb2.StreamCompleteResponse, None]:
    """The completion's messages: the first event alone, then the events the llm coalesced
    (adjacent text deltas joined), so one message, and one SSE write, carries several tokens."""
    return stream(deps.backends.llm.StreamComplete, llm_request, timeout=COMPLETION_TIMEOUT_SECONDS)


async def _stream_response(request: web.Request, *, by_service: bool) -> web.StreamResponse:
    deps, llm_request, strip_fences = await _prepare(request, by_service=by_service)
    events = _events(deps, llm_request)
    try:
        # The first event decides between an HTTP error and a stream: nothing is sent before it.
        first = await anext(events)
        response = web.StreamResponse(headers=SSE_HEADERS)
        await response.prepare(request)
        renderer = EventRenderer(strip_fences=strip_fences)
        message: llm_pb2.StreamCompleteResponse | None = first
        done = False
        try:
            while message is not None and not done:
                # One write per message (not per event or rendered item): write() waits for the
                # socket to drain, so a slow plugin slows the whole chain, and each write is a syscall.
                items = []
                for event in message.events:
                    items += renderer.render(event)
                    if event.WhichOneof("event") == "done":
                        done = True
                        break
                if items:
                    # A lone text delta renders to one item: encode it without a join.
                    await response.write(_sse(items[0]) if len(items) == 1 else b"".join(map(_sse, items)))
                if not done:
                    message = await anext(events, None)
        except DomainError as err:
            # Headers are gone: the failure (e.g. the llm service went away) becomes events.
            logger.warning("bridge stream failed after it started: %s", err.message)
            await response.write(_sse({"Type": ERROR, "Value": err.message}) + _sse({"Type": END, "Value": None}))
        await response.write_eof()
        if done:
            # The llm ends the call right after Done: reading that end finishes the stream
            # cleanly, where closing it first would cancel it (work for both processes). What
            # the llm reports then no longer matters: the plugin has its whole answer.
            with contextlib.suppress(DomainError):
                await anext(events, None)
        return response
    finally:
        await events.aclose()


def _sse(item: dict[str, object]) -> bytes:
    # orjson: one encode per token on the path every plugin stream takes.
    return b"data: " + orjson.dumps(item) + b"\n\n"


async def _collect(request: web.Request, *, by_service: bool) -> web.Response:
    deps, llm_request, strip_fences = await _prepare(request, by_service=by_service)
    text: list[str] = []
    events = _events(deps, llm_request)
    try:
        async for message in events:
            for event in message.events:
                kind = event.WhichOneof("event")
                if kind == "text_delta":
                    text.append(event.text_delta.text)
                elif kind == "error":
                    raise UpstreamUnavailable(event.error.message)
    finally:
        await events.aclose()
    answer = "".join(text)
    if strip_fences:
        fences = FenceStripper()
        answer = fences.feed(answer) + fences.finish()
    return web.json_response({"completion": answer})


@routes.post("/bridge/v1/completion/agent/{agent}")
async def complete_agent(request: web.Request) -> web.StreamResponse:
    """A completion with the named agent, streamed as SSE."""
    return await _stream_response(request, by_service=False)


@routes.post("/bridge/v1/completion/agent/{agent}/nostream")
async def complete_agent_nostream(request: web.Request) -> web.Response:
    """A completion with the named agent, answered whole as ``{"completion": ...}``."""
    return await _collect(request, by_service=False)


@routes.post("/bridge/v1/completion/service/{service}")
async def complete_service(request: web.Request) -> web.StreamResponse:
    """A completion with the first agent of the named service, streamed as SSE."""
    return await _stream_response(request, by_service=True)


@routes.post("/bridge/v1/completion/service/{service}/nostream")
async def complete_service_nostream(request: web.Request) -> web.Response:
    """A completion with the first agent of the named service, answered whole."""
    return await _collect(request, by_service=True)
