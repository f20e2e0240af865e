"""The admin guide's Structured Output rules, shared by agent validation (index) and the bridge
(gateway): which providers can constrain an answer to a JSON schema, and when an agent does."""

from __future__ import annotations

_STRUCTURED_OUTPUT_TYPES = frozenset({"anthropic", "openai", "openaicompatible", "azure"})


def supports_structured_output(service_type: str) -> bool:
    """Whether the provider can constrain answers to a JSON schema."""
    return service_type in _STRUCTURED_OUTPUT_TYPES


def sends_json_schema(service_type: str, *, structured_output_enabled: bool, reasoning_enabled: bool) -> bool:
    """Whether a request's JSON schema goes to the provider: the agent turned Structured Output on,
    its provider supports it, and it is not Anthropic with extended thinking (the two cannot be
    combined there). Otherwise the plugin's fallback applies: no schema, fences stripped."""
    if not (structured_output_enabled and supports_structured_output(service_type)):
        return False
    return not (service_type == "anthropic" and reasoning_enabled)
