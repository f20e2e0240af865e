"""``python -m services.llm``: load the settings, then serve until SIGTERM or SIGINT."""

from services.common.runtime import main
from services.llm.server import create_server
from services.llm.settings import load

if __name__ == "__main__":
    main(load, create_server)
