"""The usage-event handler: one JetStream message in, one ledger entry (at most) out.

    parse ──invalid──▶ term (poison)
      │
    price ──unknown model / inconsistent tokens──▶ term (poison)
      │
    record_usage (one transaction, committed) ──transient DB error──▶ nak(delay=1)
      │                                       └─anything else────────▶ nak(delay=10), logged
    ack (new entry or duplicate alike)

The ack is sent only after the commit, so a crash anywhere before it means
redelivery, and redelivery is harmless because the ledger is keyed by
``event_id``. Poison is terminated, never retried: it can only fail again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.events import UsageRecorded
from gateway_common.pricing import PricingError

from .metrics import BillingMetrics
from .pricing import PriceBook
from .store import repo

__all__ = ["UsageHandler"]

log = logging.getLogger(__name__)

#: Failures expected to pass on their own: connection loss, lock timeouts, pool exhaustion.
_TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)
_TRANSIENT_DELAY_S = 1.0
_UNEXPECTED_DELAY_S = 10.0


class UsageHandler:
    """Bills ``usage.recorded.v1`` messages; called by ``runtime.pull_loop`` one at a time.

    ``__call__`` never raises for a problem with one message: it decides the
    message's fate (ack, nak or term) itself.
    """

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        prices: PriceBook,
        metrics: BillingMetrics,
    ) -> None:
        self._sessions = sessions
        self._prices = prices
        self._metrics = metrics

    async def __call__(self, msg: Msg) -> None:
        try:
            event = UsageRecorded.model_validate_json(msg.data)
            items = self._prices.price(event)
        except (ValidationError, PricingError) as exc:
            self._metrics.poison.inc()
            log.error(
                "terminating poison usage message (stream seq %s): %s",
                msg.metadata.sequence.stream,
                exc,
            )
            await msg.term()
            return
        billed_at = datetime.now(UTC)
        try:
            async with self._sessions() as session:
                recorded = await repo.record_usage(
                    session=session, event=event, items=items, billed_at=billed_at
                )
        except _TRANSIENT as exc:
            self._metrics.retried.labels("transient").inc()
            log.warning("event %s: transient database error, retrying: %s", event.event_id, exc)
            await msg.nak(delay=_TRANSIENT_DELAY_S)
            return
        except Exception:  # the message stays retriable; a bug must not stop the consumer
            self._metrics.retried.labels("unexpected").inc()
            log.exception("event %s: unexpected failure, retrying later", event.event_id)
            await msg.nak(delay=_UNEXPECTED_DELAY_S)
            return
        if recorded:
            self._metrics.billed.inc()
            occurred_at = event.occurred_at
            if occurred_at.tzinfo is None:
                occurred_at = occurred_at.replace(tzinfo=UTC)
            self._metrics.lag.observe((billed_at - occurred_at).total_seconds())
        else:
            self._metrics.duplicates.inc()
            log.info("event %s already billed; acking the redelivery", event.event_id)
        await msg.ack()
