"""Prompt text: the agent's system prompt, title generation, thread analysis and channel summaries.

The wording follows the plugin's templates in substance (identity, capability honesty, custom
instructions, who is asking and where, the current time in the user's timezone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TITLE_MAX_TOKENS = 25
TITLE_INSTRUCTION = (
    "Write a short title (at most eight words) for the conversation that starts with the user's "
    "request below. Answer with the title only: no quotes, no trailing punctuation."
)
TOOLS_DISABLED_NOTE = (
    "Tools are not available in this channel. If the user asks for something that needs a tool, "
    "say that tools can be used in a direct message with you."
)
TRANSCRIPT_PRESET = "summarize_transcript"
ANALYSIS_TITLES = {
    "summarize_thread": "Thread Summary",
    "action_items": "Action Items",
    "open_questions": "Open Questions",
}
SUMMARY_TITLES = {
    "summarize_unreads": "Summarize Unreads",
    "summarize_range": "Summarize Channel",
    "custom": "Summarize Channel",
    "action_items": "Action Items",
    "open_questions": "Open Questions",
    "summarize_transcript": "Meeting Summary",
}
_TASKS = {
    "summarize_thread": "Summarize the thread below. Lead with the outcome, then the key points and who raised them.",
    "action_items": "List the action items in the posts below: what must be done, by whom, and by when if stated.",
    "open_questions": "List the questions in the posts below that are still unanswered, and who asked each.",
    "summarize_unreads": "Summarize the channel posts below that the user has not read yet.",
    "summarize_range": "Summarize the channel posts below: the main topics, decisions and who drove them.",
    "custom": "Do what the user's additional instructions below ask, using only the channel posts below.",
    # The plugin's meeting summary: a short overview, the key points and the action items.
    "summarize_transcript": (
        "Summarize the meeting transcript below. Use three Markdown sections: '#### Summary' (a few "
        "sentences on what the meeting was about and what was decided), '#### Key points' (the main "
        "topics discussed, with who raised them when speakers are named) and '#### Action items' "
        "(what must be done, by whom, and by when if stated; write 'None' when there are none). "
        "Use only what the transcript says."
    ),
    # A part of a transcript too long for one request (summaries of parts are combined after).
    "summarize_transcript_chunk": (
        "Below is one part of a longer meeting transcript. Summarize this part only, keeping every "
        "decision, open question and action item with the names of the people involved; your "
        "summary will be combined with the summaries of the other parts."
    ),
}


@dataclass(frozen=True)
class PromptContext:
    """Everything the system prompt mentions."""

    bot_name: str
    bot_username: str
    model: str
    custom_instructions: str
    user_username: str
    user_full_name: str = ""
    user_position: str = ""
    user_is_admin: bool = False
    user_timezone: str = ""
    user_locale: str = ""
    channel_name: str = ""
    team_name: str = ""
    is_direct_message: bool = False
    tools_disabled_note: bool = False


def current_time(timezone: str, now: datetime | None = None) -> str:
    """RFC 1123 time in the user's IANA timezone (UTC when unknown)."""
    moment = now or datetime.now(UTC)
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return format_datetime(moment.astimezone(zone))


def _clean(value: str) -> str:
    # Names come from users: keep them on one line so they cannot forge prompt structure.
    return " ".join(value.split())[:128]


def system_prompt(ctx: PromptContext, now: datetime | None = None) -> str:
    """The agent's system prompt, rendered once per conversation and stored as its snapshot."""
    lines = [
        f"You are {_clean(ctx.bot_name)} (@{ctx.bot_username}), an AI assistant inside Mattermost.",
        f"The current time is {current_time(ctx.user_timezone, now)}.",
    ]
    if ctx.model:
        lines.append(f"You run on the model {ctx.model}.")
    lines.append(
        "Be honest about what you can do: never claim to have done something you have no tool for, "
        "and say so when you do not know."
    )
    if ctx.tools_disabled_note:
        lines.append(TOOLS_DISABLED_NOTE)
    if ctx.custom_instructions.strip():
        lines += ["", "Instructions from the people who set you up:", ctx.custom_instructions.strip(), ""]
    user = f"You are talking to @{_clean(ctx.user_username)}"
    if ctx.user_full_name.strip():
        user += f" ({_clean(ctx.user_full_name)})"
    if ctx.user_position.strip():
        user += f", {_clean(ctx.user_position)}"
    if ctx.user_is_admin:
        user += ", a system administrator"
    lines.append(user + ".")
    if ctx.is_direct_message:
        lines.append("This is a direct message between you and the user.")
    elif ctx.channel_name:
        where = f'The conversation happens in the channel "{_clean(ctx.channel_name)}"'
        if ctx.team_name:
            where += f' of the team "{_clean(ctx.team_name)}"'
        lines.append(where + ".")
    if ctx.user_locale and not ctx.user_locale.startswith("en"):
        lines.append(f"Answer in the user's language (locale {ctx.user_locale}) unless asked otherwise.")
    return "\n".join(lines)


def task_prompt(kind: str) -> str:
    """The instruction for a thread analysis or a channel summary preset."""
    return _TASKS[kind]


@dataclass(frozen=True)
class FormattedPost:
    """A post as the analysis prompts quote it."""

    author: str
    message: str


def thread_text(posts: Sequence[FormattedPost], extra_prompt: str = "") -> str:
    """Posts between markers, as the plugin's ``thread_user`` template renders them."""
    body = "\n".join(f"{p.author}: {p.message}" for p in posts)
    text = f"Posts Start\n{body}\nPosts End"
    if extra_prompt.strip():
        text += f"\n\nAdditional instructions from the user: {extra_prompt.strip()}"
    return text


def transcript_request(transcript: str, extra_prompt: str = "", *, part: str = "") -> str:
    """A transcript (or the summaries of its parts) between markers, like ``thread_text``."""
    label = part or "Transcript"
    text = f"{label} Start\n{transcript}\n{label} End"
    if extra_prompt.strip():
        text += f"\n\nAdditional instructions from the user: {extra_prompt.strip()}"
    return text


def clean_title(raw: str) -> str:
    """A model's title trimmed to one short line without wrapping quotes."""
    title = " ".join(raw.split()).strip().strip("\"'`\u201c\u201d\u2018\u2019").strip()
    return title[:100]
