"""Files named by a bridge completion's posts (``posts[].file_ids``), read into its messages.

A request acting for a user reads a file only when that user can read the channel of the post
the file is attached to; a plugin acting for itself reads any file, as in the plugin, which
checks permissions only when the calling plugin names a user.
"""

from __future__ import annotations

from agents.llm.v1 import llm_pb2 as llm_pb2
from agents.registry.v1 import registry_pb2 as registry_pb2

from services.common.mattermost.attachments import (
    AttachedFile,
    AttachedImage,
    AttachmentReader,
    describe,
    readable_file_info,
)
from services.common.mattermost.client import MattermostClient
from services.gateway.bridge.events import BridgeRequest


async def attach_files(mm: MattermostClient, bridge: BridgeRequest, agent: registry_pb2.Agent) -> None:
    """Append each post's files to its message: text content, images for a vision agent (user
    posts only: providers take images from users), other files by name. NotFound or
    PermissionDenied for a file that is missing or that the user may not read."""
    reader = AttachmentReader(mm, vision=agent.enable_vision, max_file_size=agent.max_file_size)
    for message, file_ids in zip(bridge.messages, bridge.file_ids, strict=False):
        for file_id in file_ids:
            info = (
                await readable_file_info(mm, bridge.user_id, file_id)
                if bridge.user_id
                else await mm.get_file_info(file_id)
            )
            attachment = await reader.read(info)
            if isinstance(attachment, AttachedImage) and message.role == llm_pb2.ROLE_USER:
                image = llm_pb2.ImagePart(mime_type=info.mime_type, data=attachment.data)
                message.parts.append(llm_pb2.Part(image=image))
            else:
                text = describe(AttachedFile(info) if isinstance(attachment, AttachedImage) else attachment)
                message.parts.append(llm_pb2.Part(text=text))
