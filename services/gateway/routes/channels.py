"""POST /channel/{channelid}/interval and /analyze: channel summaries streamed into a DM."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from aiohttp import web

from services.common.errors import InvalidInput
from services.common.licensing import Feature
from services.gateway.middleware import read_json
from services.gateway.routes.guards import bot_for, require_channel_read, require_license
from services.gateway.routes.summaries import SummaryRequest, summarize_into_dm

routes = web.RouteTableDef()

PRESETS = ("summarize_unreads", "summarize_range", "action_items", "open_questions")
# /channel/{id}/analyze's analysis types, as the summary presets that answer them.
ANALYSIS_PRESETS = {
    "summarize": "summarize_range",
    "summarize_channel": "summarize_range",
    "action_items": "action_items",
    "open_questions": "open_questions",
}
DAY_MS = 24 * 3600 * 1000
MAX_DAYS = 14
MAX_RANGE_MS = MAX_DAYS * DAY_MS
DEFAULT_DAYS = 1


def _int(body: dict[str, object], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{key} must be a non-negative integer (milliseconds)", field=key)
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", field=key)
    return value


def _timestamp(body: dict[str, Any], key: str) -> int:
    """An RFC 3339 / ISO 8601 time (UTC when it names no zone) in ms; 0 when absent."""
    raw = _text(body, key)
    if not raw:
        return 0
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{key} must be an ISO 8601 time", field=key) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    return body


@routes.post("/channel/{channelid}/interval")
async def interval(request: web.Request) -> web.Response:
    """A preset summary of the channel's posts between ``start_time`` and ``end_time``."""
    body = _object(await read_json(request))
    preset = body.get("preset_prompt")
    if preset not in PRESETS:
        raise InvalidInput(f"preset_prompt must be one of {', '.join(PRESETS)}", field="preset_prompt")
    start, end = _int(body, "start_time"), _int(body, "end_time")
    if end and end < start:
        raise InvalidInput("end_time is before start_time", field="end_time")
    if end and end - start > MAX_RANGE_MS:
        raise InvalidInput("the range is over 14 days", field="start_time")
    return await _summarize_channel(request, str(preset), start, end, _text(body, "prompt"))


@routes.post("/channel/{channelid}/analyze")
async def analyze(request: web.Request) -> web.Response:
    """A channel analysis over ``since``/``until`` or the last ``days`` days (at most 14)."""
    body = _object(await read_json(request))
    analysis_type = body.get("analysis_type")
    # Checked as a string first: an object or array is not hashable, so no dict lookup for it.
    if not isinstance(analysis_type, str) or analysis_type not in ANALYSIS_PRESETS:
        choices = ", ".join(ANALYSIS_PRESETS)
        raise InvalidInput(f"analysis_type must be one of {choices}", field="analysis_type")
    days = body.get("days", 0)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DAYS:
        raise InvalidInput("days must be an integer from 0 to 14", field="days")
    # No "until" is "up to now" (end 0), decided by the llm service when the turn runs.
    end = _timestamp(body, "until")
    start = _timestamp(body, "since") or (end or int(time.time() * 1000)) - (days or DEFAULT_DAYS) * DAY_MS
    if end and start >= end:
        raise InvalidInput("since must be before until", field="since")
    if (end or int(time.time() * 1000)) - start > MAX_RANGE_MS:
        raise InvalidInput("the range is over 14 days", field="since")
    return await _summarize_channel(request, ANALYSIS_PRESETS[analysis_type], start, end, _text(body, "prompt"))


async def _summarize_channel(request: web.Request, preset: str, start: int, end: int, prompt: str) -> web.Response:
    """The plugin's guards (channel read, agent, license), then the summary streamed into a DM."""
    channel_id = request.match_info["channelid"]
    await require_channel_read(request, channel_id)
    agent = await bot_for(request)
    await require_license(request, Feature.CHANNEL_SUMMARIES)
    # Summaries over a fixed range cannot be regenerated (the plugin's no_regen).
    summary = SummaryRequest(channel_id, preset, start, end, prompt, props={"no_regen": "true"})
    return await summarize_into_dm(request, agent, summary)
