"""``python -m fakeprovider``: serve the fake provider with uvicorn (uvloop + httptools).

Exits 0 after a graceful shutdown on SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal

import uvicorn

from fakeprovider.app import create_app
from fakeprovider.config import FakeProviderSettings

__all__ = ["main", "serve"]


def serve(settings: FakeProviderSettings) -> None:
    """Run the server in the foreground until SIGTERM/SIGINT."""
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        log_level="info",
        backlog=4096,
        timeout_keep_alive=60,
    )
    # uvicorn re-raises the signal it caught once it has shut down; a no-op handler
    # underneath turns that into a normal return, hence exit status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run()


def main() -> None:
    """Entry point: settings from the environment, then ``serve``."""
    serve(FakeProviderSettings())


if __name__ == "__main__":
    main()
