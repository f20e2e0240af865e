"""``python -m services.index``: load the settings, then serve until SIGTERM or SIGINT."""

from services.common.runtime import main
from services.index.server import create_server
from services.index.settings import load

if __name__ == "__main__":
    main(load, create_server)
