"""``python -m billing reconcile --from T1 --to T2``: the USAGE stream against the ledger.

For usage events that occurred in ``[from, to)`` it reports

    unbilled      events in the stream with no ledger entry
    billed twice  event ids with more than one entry (the unique key forbids it; checked anyway)
    orphans       ledger entries whose event is not in the stream
    unreadable    stream messages in the window that do not parse as UsageRecorded

and exits 0 when all four are empty, 1 otherwise (2 on bad arguments).

The stream is read with an ephemeral *ordered* consumer starting at
``from - slack`` (JetStream's ``opt_start_time``; a message is stored a
little after its event occurred), never with billing's durable consumer,
so reconciling cannot disturb billing. Reading stops at the last message
that existed when it began or past ``to + slack``. Events are matched on
``occurred_at``, the time the ledger records too; entries in the window are
read from the ledger by that same time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import db, subjects
from gateway_common.events import UsageRecorded
from gateway_common.nats import connect

from .config import BillingSettings
from .store.reports import entry_ids_between

__all__ = ["ReconcileReport", "command", "reconcile", "stream_events"]

_NEXT_MESSAGE_TIMEOUT_S = 5.0


@dataclass
class ReconcileReport:
    """What differs between the stream and the ledger in one window."""

    start: datetime
    end: datetime
    events: int = 0
    entries: int = 0
    unbilled: list[str] = field(default_factory=list)
    billed_twice: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when stream and ledger agree exactly."""
        return not (self.unbilled or self.billed_twice or self.orphans or self.unreadable)

    def render(self) -> str:
        """A human-readable report, one finding per line."""
        lines = [
            f"window {self.start.isoformat()} .. {self.end.isoformat()}: "
            f"{self.events} events in the stream, {self.entries} ledger entries",
            *(f"unbilled event {event_id}" for event_id in self.unbilled),
            *(f"billed twice: event {event_id}" for event_id in self.billed_twice),
            *(f"ledger entry without event: {event_id}" for event_id in self.orphans),
            *(f"unreadable message at stream sequence {seq}" for seq in self.unreadable),
            "clean" if self.clean else "NOT CLEAN",
        ]
        return "\n".join(lines)


async def stream_events(
    js: JetStreamContext, *, since: datetime, until: datetime
) -> tuple[list[UsageRecorded], list[int]]:
    """Usage events stored from ``since`` to about ``until``, and the sequences that do not parse."""
    info = await js.stream_info(subjects.USAGE_STREAM)
    last = info.state.last_seq
    if info.state.messages == 0:
        return [], []
    sub = await js.subscribe(
        subjects.USAGE_RECORDED,
        stream=subjects.USAGE_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since),
    )
    events: list[UsageRecorded] = []
    unreadable: list[int] = []
    try:
        consumer = await sub.consumer_info()
        if consumer.num_pending == 0 and not (consumer.delivered and consumer.delivered.stream_seq):
            return [], []  # nothing stored at or after ``since``
        while True:
            try:
                msg = await sub.next_msg(timeout=_NEXT_MESSAGE_TIMEOUT_S)
            except NatsTimeout:
                break  # the last message is filtered out; nothing more will come
            meta = msg.metadata
            if meta.timestamp > until:
                break
            try:
                events.append(UsageRecorded.model_validate_json(msg.data))
            except ValidationError:
                unreadable.append(meta.sequence.stream)
            if meta.sequence.stream >= last or meta.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return events, unreadable


async def reconcile(
    *,
    js: JetStreamContext,
    sessions: async_sessionmaker[AsyncSession],
    start: datetime,
    end: datetime,
    slack: timedelta,
) -> ReconcileReport:
    """Compare the stream's events that occurred in ``[start, end)`` with the ledger's entries."""
    found, unreadable = await stream_events(js, since=start - slack, until=end + slack)
    in_window = {
        event.event_id for event in found if start <= event.occurred_at.astimezone(UTC) < end
    }
    async with sessions() as session:
        ledger = await entry_ids_between(session=session, start=start, end=end)
    return ReconcileReport(
        start=start,
        end=end,
        events=len(in_window),
        entries=sum(ledger.values()),
        unbilled=sorted(in_window - ledger.keys()),
        billed_twice=sorted(event_id for event_id, count in ledger.items() if count > 1),
        orphans=sorted(ledger.keys() - in_window),
        unreadable=unreadable,
    )


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def command(argv: Sequence[str], settings: BillingSettings | None = None) -> int:
    """The ``reconcile`` command line; prints the report, returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m billing reconcile")
    parser.add_argument(
        "--from", dest="start", type=_moment, required=True, help="ISO 8601 (UTC if no zone)"
    )
    parser.add_argument("--to", dest="end", type=_moment, required=True, help="ISO 8601, exclusive")
    parser.add_argument(
        "--slack-s", type=float, default=300.0, help="stream read margin around the window"
    )
    args = parser.parse_args(list(argv))
    if args.end <= args.start:
        parser.error("--to must be after --from")
    report = asyncio.run(
        _run(settings or BillingSettings(), args.start, args.end, timedelta(seconds=args.slack_s))
    )
    sys.stdout.write(report.render() + "\n")
    return 0 if report.clean else 1


async def _run(
    settings: BillingSettings, start: datetime, end: datetime, slack: timedelta
) -> ReconcileReport:
    engine = db.create_engine(settings.resolved_database_url())
    nc = await connect(settings.nats_url, name="billing-reconcile")
    try:
        return await reconcile(
            js=nc.jetstream(),
            sessions=db.make_sessionmaker(engine),
            start=start,
            end=end,
            slack=slack,
        )
    finally:
        await nc.close()
        await engine.dispose()
