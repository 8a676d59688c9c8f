"""Sessions' composition root: ``run(settings, stop)`` and the process entry point.

``run`` serves the stored-responses and the session-history request/reply
subjects (``handlers``, ``history``; both ``responder.Responder``s) and runs
the reaper every ``SESSIONS_REAPER_INTERVAL_S``: it purges expired stored
responses, then reaps session history in bounded passes (at most
``REAP_BATCH`` rows per stage and ``REAP_MAX_PASSES`` passes per run, so one
run never holds the database for long; what is left waits for the next run).

It also consumes the durable ``sessions-history`` on TRANSCRIPTS
(``transcripts.TranscriptConsumer`` in ``runtime.pull_loop``): the edge's
transcript events, each the JetStream copy of a history append, applied
idempotently by request id and acked after the commit. On stop the reaper
returns, the pull loop finishes its message and the responders drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import runtime, subjects

from .config import SessionsSettings
from .handlers import ResponsesResponder
from .history import HistoryResponder
from .metrics import SessionsMetrics
from .store import history as history_store
from .store import repo
from .transcripts import TranscriptConsumer

__all__ = [
    "MIGRATIONS_DIR",
    "REAP_BATCH",
    "REAP_MAX_PASSES",
    "TRANSCRIPT_BATCH",
    "main",
    "reap_once",
    "run",
]

log = logging.getLogger(__name__)

#: services/sessions/migrations (the package lives in services/sessions/src/sessions).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
#: Rows each stage of one history reaper pass deletes or marks at most.
REAP_BATCH = 1000
#: History reaper passes per run at most (each its own transaction).
REAP_MAX_PASSES = 20
#: Transcript events fetched at a time (handled one by one, each acked after its commit).
TRANSCRIPT_BATCH = 64


async def run(settings: SessionsSettings, stop: asyncio.Event) -> None:
    """Serve health, stored responses and session history, reap, until ``stop`` is set."""
    async with runtime.open_runtime(
        settings, service="sessions", migrations_dir=MIGRATIONS_DIR
    ) as rt:
        await runtime.ensure_pull_consumer(
            rt.js,
            stream=subjects.TRANSCRIPTS_STREAM,
            durable=subjects.SESSIONS_DURABLE,
            filter_subject=subjects.SESSION_TURN_APPENDED,
        )
        metrics = SessionsMetrics(rt.registry)
        transcripts = await rt.js.pull_subscribe_bind(
            subjects.SESSIONS_DURABLE, stream=subjects.TRANSCRIPTS_STREAM
        )
        halt = asyncio.Event()
        pulling = asyncio.create_task(
            runtime.pull_loop(
                transcripts,
                TranscriptConsumer(rt.sessions, metrics=metrics).handle,
                stop=halt,
                batch_size=TRANSCRIPT_BATCH,
                metrics=rt.consumer_metrics,
            )
        )
        responders = [
            ResponsesResponder(rt.sessions, ttl_s=settings.history_ttl_s, metrics=metrics),
            HistoryResponder(rt.sessions, default_ttl_s=settings.history_ttl_s, metrics=metrics),
        ]
        try:
            for responder in responders:
                await responder.start(rt.nc)
            await rt.serving()
            await _reap_until(stop, rt.sessions, settings)
        finally:
            halt.set()
            await pulling
            for responder in responders:
                await responder.aclose()


async def _reap_until(
    stop: asyncio.Event, sessions: async_sessionmaker[AsyncSession], settings: SessionsSettings
) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.reaper_interval_s)
            return
        try:
            await reap_once(sessions, tombstone_s=settings.history_tombstone_s)
        except SQLAlchemyError as exc:
            log.warning("sessions reaper run failed, retrying next interval: %s", exc)


async def reap_once(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tombstone_s: float,
    now: datetime | None = None,
) -> history_store.ReapCounts:
    """One reaper run: purge expired stored responses, then up to ``REAP_MAX_PASSES``
    bounded history passes; returns the history totals."""
    moment = now or datetime.now(UTC)
    async with sessions() as session:
        purged = await repo.purge_expired(session=session, now=moment)
    if purged:
        log.info("purged %d expired stored responses", purged)
    turns = reaped = deleted = 0
    for _ in range(REAP_MAX_PASSES):
        async with sessions() as session:
            counts = await history_store.reap_history(
                session=session, now=moment, tombstone_s=tombstone_s, batch=REAP_BATCH
            )
        turns, reaped, deleted = (
            turns + counts.turns,
            reaped + counts.reaped,
            deleted + counts.deleted,
        )
        if not counts.full:
            break
    if turns or reaped or deleted:
        log.info(
            "session history reaped: %d turns deleted, %d sessions expired, %d forgotten",
            turns,
            reaped,
            deleted,
        )
    return history_store.ReapCounts(turns=turns, reaped=reaped, deleted=deleted, full=counts.full)


def main(argv: Sequence[str]) -> int:
    """``python -m sessions [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="sessions",
        settings_factory=SessionsSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
