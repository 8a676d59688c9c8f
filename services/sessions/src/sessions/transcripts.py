"""The durable JetStream consumer of transcript events (``session.turn.appended.v1``).

The edge publishes each history append twice over: as a ``TurnsAppended``
event on stream TRANSCRIPTS (durable once JetStream acknowledged it) and as
the ``sessions.history.append.v1`` request, whose reply after the commit gives
the next request read-your-writes. Whichever copy lands second stores nothing:
``store.history.append_turns`` is idempotent by the append's request id, also
when the copies race. So turns the stream holds reach the table even when
sessions did not answer the request in time (down, restarting, a slow commit).

Per message, pulled one at a time from the durable ``sessions-history``
(``runtime.pull_loop``) inside a consumer span in the publisher's trace:

    unparsable payload                 -> term (poison: never retried), counted ``invalid``
    database error                     -> nak after ``RETRY_DELAY_S`` (redelivered later)
    appended / already there (dup.)    -> ack after the commit
    session expired or unknown         -> ack (nothing to keep: the request copy said so)

Each outcome is counted in ``switchyard_sessions_transcripts_total{outcome}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import telemetry
from gateway_common.events import TurnsAppended

from .metrics import SessionsMetrics
from .store import history

__all__ = ["RETRY_DELAY_S", "TranscriptConsumer"]

log = logging.getLogger(__name__)

#: Seconds before a message whose database work failed is delivered again.
RETRY_DELAY_S = 1.0


class TranscriptConsumer:
    """``handle`` is the ``pull_loop`` handler of ``sessions-history`` (see module docstring)."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, metrics: SessionsMetrics
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics

    async def handle(self, msg: Msg) -> None:
        """Apply one transcript event and settle its message; never raises for the message."""
        with telemetry.consumer_span(msg, "process"):
            try:
                append = TurnsAppended.model_validate_json(msg.data).append
            except ValidationError as exc:
                log.error("terminating unreadable transcript event: %d problems", exc.error_count())
                self._metrics.count_transcript("invalid")
                await _settle(msg.term())
                return
            try:
                async with self._sessions() as session:
                    result = await history.append_request(
                        session=session, request=append, now=datetime.now(UTC)
                    )
            except SQLAlchemyError as exc:
                log.warning("transcript event not applied, retrying: %s", exc)
                await _settle(msg.nak(delay=RETRY_DELAY_S))
                return
            outcome: str = result.status
            if result.status == "ok":
                outcome = "appended" if result.appended else "duplicate"
            self._metrics.count_transcript(outcome)
            await _settle(msg.ack())


async def _settle(settling: Awaitable[None]) -> None:
    """Await an ack/nak/term; a lost connection only means the message comes again."""
    try:
        await settling
    except NatsError as exc:
        log.warning("transcript message not settled (it will be redelivered): %s", exc)
