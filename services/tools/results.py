"""What a tool hands back: text for the model, whether it failed, and sources to cite."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Citation:
    """A source the answer may link to."""

    url: str
    title: str = ""
    snippet: str = ""


@dataclass(frozen=True)
class ToolResult:
    """The result of one execution. ``is_error`` results still go to the model, which can recover."""

    content: str
    is_error: bool = False
    citations: tuple[Citation, ...] = field(default_factory=tuple)


class ToolFailed(Exception):
    """A tool ran and failed in a way the model should hear about (becomes ``is_error``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
