"""POST /channel/{channelid}/interval and /analyze: channel summaries streamed into a DM (/analyze
also lets the model read the channel with tools bound to it)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from services.common.errors import InvalidInput
from services.common.licensing import Feature
from services.gateway.deps import DEPS
from services.gateway.middleware import caller_of, read_json
from services.gateway.routes.guards import bot_for, require_channel_read, require_license
from services.gateway.routes.summaries import SummaryRequest, summarize_into_dm

routes = web.RouteTableDef()

PRESETS = ("summarize_unreads", "summarize_range", "action_items", "open_questions")
# /channel/{id}/analyze's analysis types, as the summary presets that answer them.
ANALYSIS_PRESETS = {
    "summarize": "summarize_range",
    "summarize_channel": "summarize_range",
    "days": "summarize_range",
    "date_range": "summarize_range",
    "summarize_unreads": "summarize_unreads",
    "custom": "custom",
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


def _timestamp(body: dict[str, Any], key: str, *, end_of_day: bool = False) -> int:
    """An RFC 3339 / ISO 8601 time (UTC when it names no zone) in ms; 0 when absent. A bare date
    is its midnight, or with ``end_of_day`` its last millisecond (a date range includes its end)."""
    raw = _text(body, key)
    if not raw:
        return 0
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{key} must be an ISO 8601 time", field=key) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    millis = int(when.timestamp() * 1000)
    return millis + DAY_MS - 1 if end_of_day and len(raw) == len("2006-01-02") else millis


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
    return await _summarize_channel(
        request, SummaryRequest(request.match_info["channelid"], str(preset), start, end, _text(body, "prompt"))
    )


@routes.post("/channel/{channelid}/analyze")
async def analyze(request: web.Request) -> web.Response:
    """A channel analysis: the webapp's popover modes (``days``, ``date_range``,
    ``summarize_unreads``, ``custom``) and the plugin's analysis types, over at most 14 days."""
    body = _object(await read_json(request))
    analysis_type = body.get("analysis_type")
    # Checked as a string first: an object or array is not hashable, so no dict lookup for it.
    if not isinstance(analysis_type, str) or analysis_type not in ANALYSIS_PRESETS:
        choices = ", ".join(ANALYSIS_PRESETS)
        raise InvalidInput(f"analysis_type must be one of {choices}", field="analysis_type")
    prompt = _text(body, "prompt")
    if analysis_type == "custom" and not prompt.strip():
        raise InvalidInput("prompt is required for a custom analysis", field="prompt")
    now = int(time.time() * 1000)
    if analysis_type == "summarize_unreads":
        start, end = await _unread_start(request, now), 0
    else:
        start, end = _analysis_range(body, analysis_type, now)
    # The plugin's analysis is tool-driven: the model may read the channel beyond the range.
    summary = SummaryRequest(
        request.match_info["channelid"], ANALYSIS_PRESETS[analysis_type], start, end, prompt, channel_tools=True
    )
    return await _summarize_channel(request, summary)


def _analysis_range(body: dict[str, Any], analysis_type: str, now: int) -> tuple[int, int]:
    """``since``/``until`` (required for ``date_range``), else the last ``days`` days; end 0 = now."""
    days = body.get("days", 0)
    lowest = 1 if analysis_type == "days" else 0
    if not isinstance(days, int) or isinstance(days, bool) or not lowest <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be an integer from {lowest} to {MAX_DAYS}", field="days")
    if analysis_type == "date_range" and not _text(body, "since"):
        raise InvalidInput("since is required for a date_range analysis", field="since")
    # No "until" is "up to now" (end 0), decided by the llm service when the turn runs.
    end = _timestamp(body, "until", end_of_day=True)
    start = _timestamp(body, "since") or (end or now) - (days or DEFAULT_DAYS) * DAY_MS
    if end and start >= end:
        raise InvalidInput("until must be after since", field="until")
    if (end or now) - start > MAX_RANGE_MS:
        raise InvalidInput("the range is over 14 days", field="since")
    return start, end


async def _unread_start(request: web.Request, now: int) -> int:
    """Just after the caller last viewed the channel, at most 14 days back (the plugin's cap)."""
    member = await request.app[DEPS].mattermost.get_channel_member(
        request.match_info["channelid"], caller_of(request).user.id
    )
    last_viewed = member.last_viewed_at if member else 0
    return max(last_viewed + 1, now - MAX_RANGE_MS)


async def _summarize_channel(request: web.Request, summary: SummaryRequest) -> web.Response:
    """The plugin's guards (channel read, agent, license), then the summary streamed into a DM."""
    await require_channel_read(request, summary.channel_id)
    agent = await bot_for(request)
    await require_license(request, Feature.CHANNEL_SUMMARIES)
    # Summaries over a fixed range cannot be regenerated (the plugin's no_regen).
    return await summarize_into_dm(request, agent, replace(summary, props={"no_regen": "true"}))
