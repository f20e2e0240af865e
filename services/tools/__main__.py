"""``python -m services.tools``: load the settings, then serve until SIGTERM or SIGINT."""

from services.common.runtime import main
from services.tools.server import create_server
from services.tools.settings import load

if __name__ == "__main__":
    main(load, create_server)
