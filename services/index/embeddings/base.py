"""What the index asks of an embedding provider, whichever it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Embedder(Protocol):
    """Turns texts into vectors of one model and size."""

    @property
    def dimensions(self) -> int:
        """The length of every vector."""
        ...

    @property
    def model_key(self) -> str:
        """Provider, model and dimensions: vectors with different keys are never compared."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order."""
        ...

    async def close(self) -> None:
        """Release what the embedder holds (HTTP connections)."""
        ...
