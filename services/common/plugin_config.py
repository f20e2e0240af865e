"""Client side of the plugin configuration: every service keeps the latest document in memory.

    watcher = PluginConfigWatcher(registry_stub)
    await watcher.start()
    await watcher.wait_ready(5)
    watcher.current.config.allow_unsafe_links

The watcher subscribes to ``Registry.WatchPluginConfig`` (as the system: no user identity, so the
registry sends secrets in clear), keeps the newest revision, and reconnects with capped exponential
backoff when the registry restarts. Callbacks run on every new revision; each revision's tracing
output (``telemetryOutput``, ``openTelemetryEndpoint``) is applied to the process first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agents.registry.v1 import registry_pb2 as registry_pb2
from agents.registry.v1 import registry_pb2_grpc as registry_pb2_grpc

from services.common import errors, identity, telemetry
from services.common.grpc_client import stream
from services.common.licensing import License
from services.common.telemetry import LiveLogLevel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginConfigSnapshot:
    """One revision of the plugin configuration, with the license it came with."""

    config: registry_pb2.PluginConfig
    license: License
    revision: str


# Long but finite: the channel's default deadline (seconds) would end the watch every few seconds.
WATCH_TIMEOUT_SECONDS = 24 * 3600.0
# Longest wait between two tries while no configuration has arrived yet.
STARTUP_MAX_BACKOFF_SECONDS = 0.5

Callback = Callable[[PluginConfigSnapshot], Awaitable[None] | None]


class PluginConfigWatcher:
    """Keeps the newest plugin configuration of the registry in memory, and calls back on each new one.

    ``registry`` is a RegistryStub on a grpc.aio channel carrying the service token.
    """

    def __init__(
        self, registry: registry_pb2_grpc.RegistryStub, *, initial_backoff: float = 0.1, max_backoff: float = 5.0
    ) -> None:
        self._registry = registry
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._current: PluginConfigSnapshot | None = None
        self._ready = asyncio.Event()
        self._callbacks: list[Callback] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> PluginConfigSnapshot:
        """The newest configuration; raises UpstreamUnavailable before the first one arrived."""
        if self._current is None:
            raise errors.UpstreamUnavailable("plugin configuration not loaded yet", retry_after=1)
        return self._current

    @property
    def ready(self) -> bool:
        """Whether a configuration has arrived (``current`` answers)."""
        return self._current is not None

    def on_change(self, callback: Callback) -> None:
        """Call ``callback(snapshot)`` on every new revision (also the first)."""
        self._callbacks.append(callback)

    async def start(self) -> None:
        """Start watching in the background (returns at once; see ``wait_ready``)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="plugin-config-watcher")

    async def wait_ready(self, timeout: float) -> PluginConfigSnapshot:
        """Wait for the first configuration; UpstreamUnavailable after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise errors.UpstreamUnavailable(
                "plugin configuration not received from the registry", retry_after=1
            ) from None
        return self.current

    async def close(self) -> None:
        """Stop watching (the background task ends)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._initial_backoff
        # The watch is the process's own, not any user's: no identity rides on it.
        identity.current_identity.set(identity.SYSTEM)
        identity.current_deadline.set(None)
        while True:
            try:
                async for message in stream(
                    self._registry.WatchPluginConfig,
                    registry_pb2.WatchPluginConfigRequest(),
                    timeout=WATCH_TIMEOUT_SECONDS,
                ):
                    delay = self._initial_backoff
                    await self._apply(message)
            except asyncio.CancelledError:
                raise
            except errors.DomainError as err:
                logger.warning("plugin configuration watch ended: %s; reconnecting", err.message)
            except Exception:
                logger.exception("plugin configuration watch failed; reconnecting")
            await asyncio.sleep(delay)
            # Until the first configuration arrives the process is waiting for it to start
            # (a registry still starting refuses at first): ask again soon.
            delay = min(delay * 2, self._max_backoff if self.ready else STARTUP_MAX_BACKOFF_SECONDS)

    async def _apply(self, message: registry_pb2.WatchPluginConfigResponse) -> None:
        license = License(message.license)
        # A license change comes with the same revision.
        if self._current is not None and (self._current.revision, self._current.license) == (
            message.revision,
            license,
        ):
            return
        snapshot = PluginConfigSnapshot(message.config, license, message.revision)
        self._current = snapshot
        self._ready.set()
        telemetry.apply_output(message.config.telemetry_output, message.config.open_telemetry_endpoint)
        for callback in self._callbacks:
            try:
                result = callback(snapshot)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                logger.exception("plugin configuration callback failed")


def follow_debug_logging(watcher: PluginConfigWatcher) -> None:
    """Apply every revision's ``enableDebugLogging`` to this process's log level, live."""
    level = LiveLogLevel()
    watcher.on_change(lambda snapshot: level.apply(snapshot.config.enable_debug_logging))
