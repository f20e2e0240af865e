"""The index health check: how many posts are indexed against Mattermost's count, and whether the
configured embedding model is the one the index was built with."""

from __future__ import annotations

import time
from dataclasses import dataclass

from services.common.errors import FailedPrecondition
from services.common.mattermost import MattermostClient
from services.index.reindex.runner import indexed_channels
from services.index.search.semantic import SemanticIndex


@dataclass(frozen=True)
class Health:
    """The plugin's health check answer."""

    db_post_count: int
    indexed_post_count: int
    status: str
    checked_at: int
    error: str = ""
    model_compatible: bool = False
    model_needs_reindex: bool = False
    model_compat_reason: str = ""

    @property
    def missing_posts(self) -> int:
        """Posts Mattermost has that the index lacks (0 when the index has as many or more)."""
        return max(self.db_post_count - self.indexed_post_count, 0)


async def check_health(index: SemanticIndex, mattermost: MattermostClient) -> Health:
    """not_configured, needs_reindex (the model changed), healthy (nothing missing) or mismatch.

    Mattermost's count is its message count of the indexed channels, bot and system posts included
    (which are not indexed), so a complete index of a server with such posts reads as a mismatch
    by their number."""
    now = int(time.time() * 1000)
    try:
        setup, recorded = await index.current()
    except FailedPrecondition as exc:
        return Health(0, 0, "not_configured", now, error=exc.message)
    indexed = await index.store.indexed_post_count()
    in_db = sum(c.total_msg_count for c in await indexed_channels(mattermost))
    if recorded not in (None, setup.space):
        assert recorded is not None
        reason = (
            f"the index holds {recorded.provider} {recorded.model} vectors of {recorded.dimensions} dimensions; "
            f"the configuration asks for {setup.space.provider} {setup.space.model} of {setup.space.dimensions}"
        )
        return Health(in_db, indexed, "needs_reindex", now, model_needs_reindex=True, model_compat_reason=reason)
    status = "healthy" if indexed >= in_db else "mismatch"
    return Health(in_db, indexed, status, now, model_compatible=True)
