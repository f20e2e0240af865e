"""POST /files/content: a window of an attached file's text (the plugin's ``handleRawFileContent``,
which external MCP clients' ``read_file`` calls reach).

Guard: the caller must be able to read the channel of the post the file is attached to (403;
404 when the file does not exist). Offsets and lengths count runes (Unicode code points).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.common.errors import InvalidInput
from services.common.mattermost.attachments import AGENT_MAX_FILE_BYTES, has_text, read_text, readable_file_info
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json
from services.gateway.request_input import check_mattermost_id

routes = web.RouteTableDef()

# The plugin's window: 6000 runes unless asked otherwise, never more than 20000.
DEFAULT_LIMIT = 6000
MAX_LIMIT = 20000
# Text past the plugin's per-file cap is not read (nor counted in total_runes).
MAX_TEXT_BYTES = AGENT_MAX_FILE_BYTES


def _count(body: dict[str, Any], name: str, default: int, maximum: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InvalidInput(f"{name} must be an integer from 0 to {maximum}", field=name)
    return value


@routes.post("/files/content")
async def file_content(request: web.Request) -> web.Response:
    """The text of ``file_id`` from ``offset`` for at most ``limit`` runes."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", field="body")
    file_id = body.get("file_id")
    if file_id is None:
        raise InvalidInput("file_id is required", field="file_id")
    check_mattermost_id(file_id, "file_id")
    offset = _count(body, "offset", 0, 2**31 - 1)
    limit = _count(body, "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT
    mm = request.app[DEPS].mattermost
    info = await readable_file_info(mm, caller_of(request).user.id, file_id)
    text = (await read_text(mm, info, MAX_TEXT_BYTES))[0] if has_text(info) else ""
    window = text[offset : offset + limit]
    return web.json_response(
        {
            "name": info.name,
            "mime_type": info.mime_type,
            "total_runes": len(text),
            "offset": offset,
            "returned": len(window),
            "has_more": offset + len(window) < len(text),
            "has_text": has_text(info),
            "text": window,
        }
    )
