"""HTTP middleware: error rendering (the one place status codes become HTTP), authentication,
and the caller identity that gRPC calls carry onward."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.common.errors import DomainError, InvalidInput, QuotaExceeded, UpstreamUnavailable
from services.common.errors_map import INTERNAL_MESSAGE, http_status_for
from services.common.identity import current_identity
from services.gateway.auth import Authenticator, Caller
from services.gateway.request_input import MATTERMOST_ID_PARAMETERS, check_mattermost_id, check_text, parse_json_body

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CALLER_KEY = web.AppKey("authenticator", Authenticator)
# The authenticated caller of a request, set by auth_middleware.
CALLER = web.RequestKey("caller", Caller)

# Plugin routes that authenticate their caller themselves (this middleware guards the plugin's
# sub-app only, so full paths; the probes live outside it): the bridge's, a plugin or a user, each
# with its own proof (services/gateway/bridge/auth.py); the Mattermost MCP server's, in the mcp
# service, with the client's bearer token (its metadata document is public: MCP clients read how
# to authenticate before they can).
SELF_GUARDED_PREFIXES = ("/plugins/mattermost-ai/bridge/v1/", "/plugins/mattermost-ai/mcp-server/")


# The status recorded (access log, span) for a request whose client hung up (nginx's 499).
CLIENT_CLOSED_REQUEST = 499


def error_response(status: int, message: str, *, retry_after: float | None = None) -> web.Response:
    """The plugin's error body, ``{"error": message}``, with ``Retry-After`` where the client should retry."""
    headers = {}
    if status in (429, 503) or retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after or 1)))
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as the plugin's JSON error: domain errors through the error table,
    anything unexpected as a 500 that names no internals."""
    try:
        return await handler(request)
    except DomainError as err:
        status = http_status_for(err)
        retry_after = err.retry_after if isinstance(err, (UpstreamUnavailable, QuotaExceeded)) else None
        message = INTERNAL_MESSAGE if status >= 500 and status not in (501, 503, 504) else err.message
        if status >= 500:
            logger.warning("request failed: %s", err.message, extra={"path": request.path, "status": status})
        return error_response(status, message, retry_after=retry_after)
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            message = "not found" if exc.status == 404 else (exc.reason or "error")
            response = error_response(exc.status, message)
            if "Allow" in exc.headers:  # a 405 lists the methods the route serves (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except Exception as exc:
        transport = request.transport
        if isinstance(exc, ConnectionResetError) and (transport is None or transport.is_closing()):
            # The client went away mid-response (a stream it stopped reading): no one is left
            # to answer; aiohttp drops this response quietly on the closed connection.
            logger.info("client disconnected", extra={"path": request.path})
            return web.Response(status=CLIENT_CLOSED_REQUEST)
        logger.exception("unhandled error", extra={"path": request.path})
        return error_response(500, INTERNAL_MESSAGE)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate the caller of each plugin route (except the self-guarded ones)
    and run the handler as that caller."""
    logger.debug("%s %s", request.method, request.path)  # the path only: a query may carry a token
    if request.path.startswith(SELF_GUARDED_PREFIXES):
        return await handler(request)
    caller = await request.app[CALLER_KEY].authenticate(request)
    request[CALLER] = caller
    token = current_identity.set(caller.identity)
    try:
        return await handler(request)
    finally:
        current_identity.reset(token)


@web.middleware
async def parameters_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Path and query parameters are held to the rule of JSON bodies' strings; a path's Mattermost
    ids must have the shape of one."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        check_text(value, name)
    for name in MATTERMOST_ID_PARAMETERS & request.match_info.keys():
        check_mattermost_id(request.match_info[name], name)
    return await handler(request)


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller of a plugin route."""
    return request[CALLER]


async def read_json(request: web.Request, *, max_bytes: int | None = None) -> Any:
    """Parse the body as JSON whatever its content type (the webapp sends text/plain); 413 past
    the limit, with or without a Content-Length."""
    limit = max_bytes or request.app["max_body_bytes"]
    if (request.content_length or 0) > limit:
        raise _too_large(limit, request.content_length or 0)
    body = bytearray()
    # A read returns what has arrived so far: a body comes in as many pieces as TCP splits it into.
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise _too_large(limit, len(body))
    return parse_json_body(bytes(body))


def _too_large(limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    # The reason is what errors_middleware answers: it names the limit.
    reason = f"request body is larger than {limit} bytes"
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size, reason=reason)


async def require_empty_body(request: web.Request) -> None:
    """Routes the plugin guards with empty-body enforcement: any body is a 400."""
    body = await request.content.read(1)
    if body:
        raise InvalidInput("this route takes no request body")
