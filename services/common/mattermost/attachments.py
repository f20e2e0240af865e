"""Files attached to posts, read for a model the way the plugin reads them (``PostToAIPost``).

A text file's content goes into the prompt, cut at the agent's ``maxFileSize`` (the plugin's
5 MiB default) with a note saying so; an image goes inline for agents with vision; any other file
is named with its type and size, since Mattermost's REST API serves no extracted text (the plugin
reads the server-side ``FileInfo.Content``, which only plugins see). Conversations (llm) and the
bridge (gateway) both read through ``AttachmentReader``; who may read which file is checked by
``readable_file_info`` or, for a thread, by reading the thread itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import PermissionDenied
from services.common.mattermost.client import MattermostClient
from services.common.mattermost.models import FileInfo

# The plugin's defaultMaxFileSize: the cap of one attachment when the agent sets none.
AGENT_MAX_FILE_BYTES = 5 * 1024 * 1024
# At most this many files and bytes are read for one request: a long thread of screenshots must
# not turn every answer into a multi-megabyte request, nor a bridge request outgrow a gRPC message.
MAX_FILES = 8
MAX_TOTAL_BYTES = 12 * 1024 * 1024
TRUNCATED_NOTE = "\n... (content truncated due to size limit)"
VISION_MIME_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Text by content although not text/*: read as UTF-8 like text/plain.
_TEXT_APPLICATION_TYPES = frozenset(
    {"application/json", "application/xml", "application/javascript", "application/yaml", "application/x-yaml"}
)


def has_text(info: FileInfo) -> bool:
    """Whether the file's bytes are text a model can read as is."""
    mime = info.mime_type.split(";", 1)[0].strip().lower()
    return mime.startswith("text/") or mime in _TEXT_APPLICATION_TYPES or mime.endswith(("+json", "+xml"))


async def read_text(mm: MattermostClient, info: FileInfo, max_bytes: int) -> tuple[str, bool]:
    """A text file's content from its first ``max_bytes`` bytes, and whether it was cut there."""
    data = await mm.get_file_start(info.id, max_bytes + 1)
    cut = len(data) > max_bytes
    # A cut can split a UTF-8 sequence: "replace" turns the broken tail into one U+FFFD.
    return data[:max_bytes].decode("utf-8", errors="replace"), cut


@dataclass(frozen=True)
class AttachedText:
    """A text file's content (ending in ``TRUNCATED_NOTE`` when cut)."""

    info: FileInfo
    text: str


@dataclass(frozen=True)
class AttachedImage:
    """An image for a model with vision."""

    info: FileInfo
    data: bytes


@dataclass(frozen=True)
class AttachedFile:
    """A file whose content is not given to the model: only its name, type and size are."""

    info: FileInfo


Attachment = AttachedText | AttachedImage | AttachedFile


def describe(attachment: AttachedText | AttachedFile) -> str:
    """The prompt text of a non-image attachment (the plugin's ``File Name: <name>`` line, then
    ``Content: <text>``)."""
    info = attachment.info
    if isinstance(attachment, AttachedText):
        return f"File Name: {info.name}\nContent: {attachment.text}"
    return f"[Attached file {info.name} ({info.mime_type or 'unknown type'}, {info.size} bytes): content not available]"


class AttachmentReader:
    """Reads one request's attachments within its caps (``MAX_FILES``, ``MAX_TOTAL_BYTES``)."""

    def __init__(self, mm: MattermostClient, *, vision: bool, max_file_size: int) -> None:
        self._mm = mm
        self._vision = vision
        self._max_file_size = max_file_size if max_file_size > 0 else AGENT_MAX_FILE_BYTES
        self._files_left = MAX_FILES
        self._bytes_left = MAX_TOTAL_BYTES

    @property
    def exhausted(self) -> bool:
        """True once ``MAX_FILES`` files were read: later files are left out entirely."""
        return self._files_left <= 0

    async def read(self, info: FileInfo) -> Attachment:
        """The file as the model gets it; raises the client's errors when Mattermost fails."""
        self._files_left -= 1
        cap = min(self._max_file_size, self._bytes_left)
        if self._vision and info.mime_type in VISION_MIME_TYPES and 0 < info.size <= cap:
            data = await self._mm.get_file(info.id, max_bytes=cap)
            self._bytes_left -= len(data)
            return AttachedImage(info, data)
        if has_text(info) and cap > 0:
            text, cut = await read_text(self._mm, info, cap)
            self._bytes_left -= len(text.encode())
            return AttachedText(info, text.strip() + (TRUNCATED_NOTE if cut else ""))
        return AttachedFile(info)


async def readable_file_info(mm: MattermostClient, user_id: str, file_id: str) -> FileInfo:
    """The file's info when ``user_id`` may read the channel of the post the file is attached to.

    NotFound when the file does not exist; PermissionDenied when it is attached to no post (its
    channel is unknown: the spec's FileInfo carries only ``post_id``), or to a post in a channel
    the user cannot read. ``mm`` is the cluster account, which reads everything: the check is ours.
    """
    info = await mm.get_file_info(file_id)
    if info.post_id:
        post = await mm.get_post(info.post_id)
        if file_id in post.file_ids and await mm.user_can_read_channel(user_id, post.channel_id):
            return info
    raise PermissionDenied("you cannot read this file: it is not attached to a post in a channel you can read")
