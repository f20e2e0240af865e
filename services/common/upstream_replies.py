"""What every client of an upstream API reads the same way: when to retry, and text safe to repeat.

Shared by the llm service's providers and the index service's embedding clients.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

# Providers sometimes echo (part of) the key in their message ("Incorrect API key provided:
# sk-abc***xyz"); scrub anything that looks like a key before the message goes anywhere.
_KEY_PATTERNS = (
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*]{6,}"), "[redacted]"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{10,}"), "[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}"), "[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"), r"\1[redacted]"),
)


def redact_secrets(text: str, *secrets: str) -> str:
    """``text`` with the given secrets and anything shaped like an API key replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _KEY_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    ms = _header(headers, "retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for key, val in headers.items():
            if key.lower() == name:
                return val
        return ""
    return value
