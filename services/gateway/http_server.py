"""The gateway's aiohttp runner, answering requests aiohttp cannot parse in the plugin's way.

aiohttp answers a request it cannot parse (an over-long request line, a malformed header) before
any middleware runs, with a text body that quotes the offending bytes, and logs them with the
traceback: a token in the query or an ``Authorization`` header would be echoed and logged. aiohttp
has no hook for this answer but ``RequestHandler.handle_error``, hence the three subclasses.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from services.gateway.middleware import error_response

logger = logging.getLogger(__name__)


class _HandlerNamingNoBytes(RequestHandler):
    """A connection's handler whose answer to an unparseable request names only the problem."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The plugin's JSON error for a parse error, logged without the request's bytes."""
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        problem = (
            "the request line or a header is too long"
            if isinstance(exc, LineTooLong)
            else f"the request is not valid HTTP/1.1 ({type(exc).__name__})"
        )
        logger.warning("refused an unparseable HTTP request: %s", problem, extra={"status": status})
        response = error_response(status, problem)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _HandlerNamingNoBytes(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparseable requests with ``_HandlerNamingNoBytes``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _Server(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            **server._kwargs,
        )
