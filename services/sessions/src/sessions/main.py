"""Sessions' composition root: ``run(settings, stop)`` and the process entry point.

The durable consumer ``sessions-history`` on TRANSCRIPTS is declared at start
so transcript events published from now on are retained for it. Nothing
pulls from it yet: there is no transcript event model in
``gateway_common.events`` to parse. TODO(sessions issue): define the
``session.turn.appended.v1`` payload, then run ``runtime.pull_loop`` with a
handler that stores turns keyed by ``event_id`` (ack after commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway_common import runtime, subjects

from .config import SessionsSettings

__all__ = ["MIGRATIONS_DIR", "main", "run"]

#: services/sessions/migrations (the package lives in services/sessions/src/sessions).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


async def run(settings: SessionsSettings, stop: asyncio.Event) -> None:
    """Serve health and hold the transcript consumer until ``stop`` is set."""
    async with runtime.open_runtime(
        settings, service="sessions", migrations_dir=MIGRATIONS_DIR
    ) as rt:
        await runtime.ensure_pull_consumer(
            rt.js,
            stream=subjects.TRANSCRIPTS_STREAM,
            durable=subjects.SESSIONS_DURABLE,
            filter_subject=subjects.SESSION_TURN_APPENDED,
        )
        await stop.wait()


def main(argv: Sequence[str]) -> int:
    """``python -m sessions [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="sessions",
        settings_factory=SessionsSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
