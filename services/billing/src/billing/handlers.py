"""The usage-event handler: a fetched batch of JetStream messages in, one transaction out.

    parse + price each ──invalid / unknown model / inconsistent tokens──▶ term (poison)
      │
    record_usages(rest of the batch, one transaction, committed)
      │   ├─transient DB error──▶ nak(delay=1) every message of the batch
      │   └─anything else───────▶ the same messages one by one, each in its own
      │                           transaction (so one bad event cannot hold up
      │                           the others): transient → nak(delay=1),
      │                           anything else → nak(delay=10), logged
    ack every message (new entry or duplicate alike)

The acks are sent only after the commit, so a crash anywhere before them
means redelivery, and redelivery is harmless because the ledger is keyed by
``event_id``. Poison is terminated, never retried: it can only fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import telemetry
from gateway_common.events import UsageRecorded
from gateway_common.pricing import PricingError

from .metrics import BillingMetrics
from .pricing import PriceBook
from .store import repo
from .store.repo import PricedUsage

__all__ = ["UsageHandler"]

log = logging.getLogger(__name__)

#: Failures expected to pass on their own: connection loss, lock timeouts, pool exhaustion.
_TRANSIENT = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, OSError)
_TRANSIENT_DELAY_S = 1.0
_UNEXPECTED_DELAY_S = 10.0

_Priced = list[tuple[Msg, PricedUsage]]


class UsageHandler:
    """Bills ``usage.recorded.v1`` messages, a fetched batch at a time.

    ``runtime.pull_batches`` calls ``handle_batch``; calling the handler with
    one message bills it alone. Neither raises for a problem with a message:
    they decide every message's fate (ack, nak or term) themselves.
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
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: Sequence[Msg]) -> None:
        """Bill ``msgs`` in one transaction (poison terminated first), then ack them all.

        Each message gets a consumer span in its publisher's trace (when tracing is on)."""
        with telemetry.consumer_spans(msgs, "process"):
            priced = await self._price(msgs)
            if priced:
                await self._bill(priced)

    async def _bill(self, priced: _Priced) -> None:
        billed_at = datetime.now(UTC)
        try:
            async with self._sessions() as session:
                billed = await repo.record_usages(
                    session=session, usages=[usage for _, usage in priced], billed_at=billed_at
                )
        except _TRANSIENT as exc:
            await self._retry(priced, "transient", _TRANSIENT_DELAY_S)
            log.warning("batch of %d: transient database error, retrying: %s", len(priced), exc)
            return
        except Exception:  # a bug or a bad event: bill the others without it
            if len(priced) == 1:
                await self._retry(priced, "unexpected", _UNEXPECTED_DELAY_S)
                log.exception("event %s: unexpected failure, retrying later", _event_id(priced))
                return
            log.exception("batch of %d failed; billing its events one by one", len(priced))
            for one in priced:
                await self._bill([one])
            return
        await self._settle(priced, set(billed), billed_at)

    async def _price(self, msgs: Sequence[Msg]) -> _Priced:
        """Each message parsed and priced; poison is terminated here and left out."""
        priced: _Priced = []
        for msg in msgs:
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
                continue
            priced.append((msg, PricedUsage(event, items)))
        return priced

    async def _settle(self, priced: _Priced, billed: set[str], billed_at: datetime) -> None:
        """After the commit: count every message as billed or duplicate, and ack it."""
        for msg, usage in priced:
            event = usage.event
            if event.event_id in billed:
                billed.discard(event.event_id)  # a second copy in this batch is a duplicate
                self._metrics.billed.inc()
                occurred_at = event.occurred_at
                if occurred_at.tzinfo is None:
                    occurred_at = occurred_at.replace(tzinfo=UTC)
                self._metrics.lag.observe((billed_at - occurred_at).total_seconds())
                self._metrics.count_billed(
                    model=event.model,
                    amount=float(usage.amount),
                    input_tokens=event.usage.prompt_tokens,
                    output_tokens=event.usage.completion_tokens,
                )
            else:
                self._metrics.duplicates.inc()
                log.info("event %s already billed; acking the redelivery", event.event_id)
            await msg.ack()

    async def _retry(self, priced: _Priced, reason: str, delay_s: float) -> None:
        self._metrics.retried.labels(reason).inc(len(priced))
        for msg, _ in priced:
            await msg.nak(delay=delay_s)


def _event_id(priced: _Priced) -> str:
    return priced[0][1].event.event_id
