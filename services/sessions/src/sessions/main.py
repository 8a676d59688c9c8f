"""Sessions' composition root: ``run(settings, stop)`` and the process entry point.

``run`` serves the stored-responses request/reply subjects (``handlers``)
and purges expired stored responses every ``PURGE_INTERVAL_S``.

The durable consumer ``sessions-history`` on TRANSCRIPTS is declared at start
so transcript events published from now on are retained for it. Nothing
pulls from it yet: there is no transcript event model in
``gateway_common.events`` to parse. TODO(sessions issue): define the
``session.turn.appended.v1`` payload, then run ``runtime.pull_loop`` with a
handler that stores turns keyed by ``event_id`` (ack after commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import runtime, subjects

from .config import SessionsSettings
from .handlers import ResponsesResponder
from .store import repo

__all__ = ["MIGRATIONS_DIR", "PURGE_INTERVAL_S", "main", "run"]

log = logging.getLogger(__name__)

#: services/sessions/migrations (the package lives in services/sessions/src/sessions).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
#: How often expired stored responses are deleted (reads already ignore them).
PURGE_INTERVAL_S = 300.0


async def run(settings: SessionsSettings, stop: asyncio.Event) -> None:
    """Serve health and stored responses, hold the transcript consumer, until ``stop`` is set."""
    async with runtime.open_runtime(
        settings, service="sessions", migrations_dir=MIGRATIONS_DIR
    ) as rt:
        await runtime.ensure_pull_consumer(
            rt.js,
            stream=subjects.TRANSCRIPTS_STREAM,
            durable=subjects.SESSIONS_DURABLE,
            filter_subject=subjects.SESSION_TURN_APPENDED,
        )
        responder = ResponsesResponder(rt.sessions, ttl_s=settings.history_ttl_s)
        await responder.start(rt.nc)
        try:
            await _purge_until(stop, rt.sessions)
        finally:
            await responder.aclose()


async def _purge_until(stop: asyncio.Event, sessions: async_sessionmaker[AsyncSession]) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_INTERVAL_S)
            return
        try:
            async with sessions() as session:
                purged = await repo.purge_expired(session=session)
        except SQLAlchemyError as exc:
            log.warning("purging expired stored responses failed: %s", exc)
            continue
        if purged:
            log.info("purged %d expired stored responses", purged)


def main(argv: Sequence[str]) -> int:
    """``python -m sessions [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="sessions",
        settings_factory=SessionsSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
