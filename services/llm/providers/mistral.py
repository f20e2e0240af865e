"""Mistral La Plateforme: chat completions with Mistral's differences.

Wire notes: ``POST https://api.mistral.ai/v1/chat/completions`` with a bearer key. Usage arrives
in the last chunk without ``stream_options`` (which, like ``user``, Mistral rejects as an unknown
field); tool calls usually arrive whole in one delta; ``tool`` messages carry the function
``name``; ``image_url`` is a plain string; reasoning (Magistral) models stream ``content`` as a
list of typed chunks where ``thinking`` chunks hold the reasoning.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from services.llm.providers.base import (
    CompletionRequest,
    Event,
    ImagePart,
    ReasoningDelta,
    ServiceSettings,
    TextDelta,
    ToolResult,
)
from services.llm.providers.encoding import image_data_url
from services.llm.providers.openai_chat import ChatCompletionsProvider


class MistralProvider(ChatCompletionsProvider):
    """Chat completions on Mistral's API."""

    provider_name = "Mistral"
    default_base_url = "https://api.mistral.ai/v1"
    include_usage_option = False
    send_user_field = False

    def auth_headers(self) -> dict[str, str]:
        """The bearer key alone: Mistral has no organization header."""
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}

    def image_content(self, image: ImagePart) -> dict[str, Any]:
        """An image item whose ``image_url`` is the data URL itself, as Mistral expects."""
        return {"type": "image_url", "image_url": image_data_url(image)}

    def tool_result_message(self, result: ToolResult) -> dict[str, Any]:
        """A ``tool`` message that also names the function, as Mistral expects."""
        return {
            "role": "tool",
            "tool_call_id": result.tool_call_id,
            "name": result.name,
            "content": result.content,
        }

    def build_body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        """The chat completions body without ``reasoning_effort``."""
        body = super().build_body(request, model)
        # Magistral models reason on their own; Mistral has no effort knob on chat completions.
        body.pop("reasoning_effort", None)
        return body

    def content_parts(self, parts: list[Any]) -> list[Event]:
        """Text chunks become text; ``thinking`` chunks (themselves lists of text) become reasoning."""
        events: list[Event] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and part.get("text"):
                events.append(TextDelta(str(part["text"])))
            elif part.get("type") == "thinking":
                for inner in part.get("thinking") or []:
                    if isinstance(inner, dict) and inner.get("text"):
                        events.append(ReasoningDelta(str(inner["text"])))
        return events


def create(settings: ServiceSettings, session: aiohttp.ClientSession) -> MistralProvider:
    """Factory for the registry in ``services.llm.providers``."""
    return MistralProvider(settings, session)
