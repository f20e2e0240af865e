"""``python -m services.gateway``: the HTTP gateway Mattermost talks to."""

import sys

from services.common import event_loop, workers
from services.common.settings import SettingsError
from services.common.telemetry import configure_logging, configure_tracing
from services.gateway.server import GatewayProcess, build_deps
from services.gateway.settings import load


def main() -> None:
    """Run the gateway (or supervise its workers) until SIGTERM or SIGINT; invalid settings exit with status 2."""
    try:
        settings = load()
    except SettingsError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.service_name, settings.log_level)
    if workers.is_supervisor(settings):
        workers.supervise(settings)
    configure_tracing(settings)  # before the aiohttp app and gRPC channels exist

    async def run() -> None:
        await GatewayProcess(settings, build_deps(settings)).run()

    event_loop.run(run(), settings.event_loop)


if __name__ == "__main__":
    main()
