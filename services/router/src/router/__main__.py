"""``python -m router``: read the settings and serve until SIGTERM/SIGINT (exit 0)."""

from __future__ import annotations

from gateway_common.lean import skip_httpx_cli

skip_httpx_cli()  # before anything imports httpx (gateway_common.lean)

import uvloop  # noqa: E402

from .config import RouterSettings  # noqa: E402
from .main import serve  # noqa: E402


def run() -> None:
    """Entry point: settings from the environment, the uvloop event loop, ``serve``."""
    uvloop.run(serve(RouterSettings()))


if __name__ == "__main__":
    run()
