"""The process lifecycle every service shares: telemetry first, start NOT_SERVING, get ready,
serve until SIGTERM/SIGINT, drain, release resources. Each service's ``server.py`` only wires."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from services.common import event_loop, workers
from services.common.errors import DomainError
from services.common.grpc_server import GrpcServiceHost
from services.common.settings import CommonSettings, SettingsError, WorkersSettings
from services.common.telemetry import configure_logging, configure_tracing

logger = logging.getLogger(__name__)


class ServiceProcess(Protocol):
    """What a service's ``create_server`` returns."""

    host: GrpcServiceHost

    async def prepare(self) -> None:
        """Wait for dependencies (database, migrations); health turns SERVING afterwards."""

    async def close(self) -> None:
        """Release pools and background tasks after the server drained."""


async def run_until_stopped(process: ServiceProcess) -> None:
    """Serve ``process`` from start to drained: NOT_SERVING, ready, SERVING, stop signal, drain, close."""
    await process.host.start()
    try:
        await process.prepare()
        await process.host.set_serving()
        await process.host.wait_for_stop_signal()
        logger.info("stop signal received")
    finally:
        await process.host.stop()
        await process.close()


def main(
    load: Callable[[], CommonSettings],
    create: Callable[[CommonSettings], Awaitable[ServiceProcess]],
) -> None:
    """``python -m services.<name>``: settings (fail fast, naming every bad variable), telemetry, run
    (or supervise the workers that run, when the service has several)."""
    try:
        settings = load()
    except SettingsError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.service_name, settings.log_level)
    if isinstance(settings, WorkersSettings) and workers.is_supervisor(settings):
        workers.supervise(settings)
    configure_tracing(settings)  # before any server or channel exists

    async def _run() -> None:
        process = await create(settings)
        await run_until_stopped(process)

    try:
        event_loop.run(_run(), settings.event_loop)
    except DomainError as err:
        logger.error("cannot start: %s", err.message)
        sys.exit(1)
