"""Command line: ``python -m edge [serve | migrate | ensure-dev-key]``.

    (no command) / serve   run the HTTP server (uvicorn, uvloop, httptools)
    migrate                upgrade the edge tables to the latest Alembic revision
    ensure-dev-key         provision GATEWAY_DEV_API_KEY (see ``edge.devkey``)

Settings come from the environment (``EdgeSettings``). SIGINT/SIGTERM stop
the server gracefully (uvicorn runs the lifespan's shutdown) with exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from types import FrameType

from gateway_common.lean import defer_nats_websocket

defer_nats_websocket()  # before anything imports nats (gateway_common.lean)

from gateway_common import db, telemetry  # noqa: E402

from .config import EdgeSettings  # noqa: E402

__all__ = ["main"]


def _exit_zero(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(settings: EdgeSettings) -> None:
    from .drain import DrainingServer
    from .main import create_app

    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the
    # signal to the handler that was installed before it, to exit "killed by signal".
    # Our contract is exit 0 after a graceful stop, so that handler exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_zero)
    # On SIGTERM the server stops listening, /readyz turns 503 and open streams get
    # GATEWAY_SHUTDOWN_GRACE_S to finish (edge.drain), then the lifespan shuts down.
    app = create_app(settings)
    config = DrainingServer.config_for(
        app,
        host=settings.host,
        port=settings.port,
        grace_s=settings.shutdown_grace_s,
        header_timeout_s=settings.header_timeout_s,
    )
    DrainingServer(config, app.state.drain).run()


def _migrate(settings: EdgeSettings) -> None:
    from .store import migrations_dir

    db.migrate(
        url=settings.resolved_database_url(),
        migrations_dir=migrations_dir(),
        service=settings.service_name,
    )


def _ensure_dev_key(settings: EdgeSettings) -> None:
    from .devkey import ensure_dev_key

    asyncio.run(ensure_dev_key(settings))


_COMMANDS = {"serve": _serve, "migrate": _migrate, "ensure-dev-key": _ensure_dev_key}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command, return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m edge", description="Switchyard edge service")
    parser.add_argument("command", nargs="?", default="serve", choices=sorted(_COMMANDS))
    args = parser.parse_args(argv)
    settings = EdgeSettings()
    if args.command != "serve":
        telemetry.setup_logging(service=settings.service_name, log_level=settings.log_level)
    _COMMANDS[args.command](settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
