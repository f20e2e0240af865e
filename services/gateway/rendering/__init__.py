"""Rendering a conversation's event stream: into the bot's reply post (throttled patches, a final
patch with metadata) and into the plugin's ``postupdate`` payloads for live SSE clients."""
