"""The cluster's license: read from Mattermost as the plugin reads it, unless an override fixes it.

Mattermost is asked again every ``refresh_seconds`` with the cluster's account, so a license
uploaded, renewed or removed applies without a restart within that time, on every service (the
feed carries it to ``WatchPluginConfig``). When Mattermost cannot be read, the last license read
stays: a Mattermost restart does not switch licensed features off and on. Until a first read
succeeds the cluster runs unlicensed, the side that never unlocks what the server did not license.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common import licensing
from services.common.errors import DomainError
from services.common.licensing import License
from services.common.mattermost import MattermostClient
from services.index.registry.config_feed import ConfigFeed

logger = logging.getLogger(__name__)


class LicenseWatch:
    """Keeps ``feed.license`` equal to Mattermost's license (or to ``override``)."""

    def __init__(
        self, mattermost: MattermostClient, feed: ConfigFeed, override: License | None, refresh_seconds: float
    ) -> None:
        self._mm = mattermost
        self._feed = feed
        self._override = override
        self._refresh_seconds = refresh_seconds
        self._task: asyncio.Task[None] | None = None
        if override is not None:
            feed.set_license(override)  # from the first call on, even before ``start``

    async def start(self) -> None:
        """Without an override: read the license once, then keep reading it in the background."""
        if self._override is None:
            await self.refresh()
            self._task = asyncio.create_task(self._run(), name="license-watch")

    async def close(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> None:
        """Read the license now and publish it when it changed; keep the last one on failure."""
        try:
            license = licensing.from_mattermost(await self._mm.get_client_license(), await self._mm.get_client_config())
        except DomainError as err:
            logger.warning(
                "could not read the license from Mattermost (%s); keeping %s", err.message, self._feed.license.name
            )
            return
        if license != self._feed.license:
            logger.info("license read from Mattermost: %s", license.name)
        self._feed.set_license(license)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                logger.exception("license refresh failed; retrying at the next interval")
