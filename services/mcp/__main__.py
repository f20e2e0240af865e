"""``python -m services.mcp``: load the settings, then serve until SIGTERM or SIGINT."""

from services.common.runtime import main
from services.mcp.server import create_server
from services.mcp.settings import load

if __name__ == "__main__":
    main(load, create_server)
