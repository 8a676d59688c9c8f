"""``python -m router``: read the settings and serve until SIGTERM/SIGINT (exit 0)."""

from __future__ import annotations

import uvloop

from .config import RouterSettings
from .main import serve


def run() -> None:
    """Entry point: settings from the environment, the uvloop event loop, ``serve``."""
    uvloop.run(serve(RouterSettings()))


if __name__ == "__main__":
    run()
