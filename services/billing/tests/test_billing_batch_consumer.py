"""The usage handler on fetched batches from a real nats-server: poison, fallback, outage."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing.handlers import UsageHandler
from billing.metrics import BillingMetrics
from billing.pricing import PriceBook
from billing.store import budgets
from billing.store.models import Credit, LedgerEntry, SpendTotal
from gateway_common import db, subjects
from gateway_common.billing_api import CreditsTopUp
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.nats import ensure_streams
from gateway_common.runtime import ensure_pull_consumer, pull_batches

pytestmark = pytest.mark.timeout(60)

#: 100 tokens at this price cost 1E+21: more integer digits than the ledger's NUMERIC(38, 18).
HUGE_MODEL = """\
  huge:
    deployments: [{provider: fake, model: h}]
    prices: {input: "10000000000000000000"}
"""


def usage(project: str, model: str = "chat-a", tokens: int = 276) -> UsageRecorded:
    return UsageRecorded(
        request_id="req",
        project_id=project,
        api_key_id="key-1",
        operation="chat.completions",
        model=model,
        provider="fake",
        deployment="fake/x",
        usage=TokenUsage(prompt_tokens=tokens),
    )


@dataclass
class Consumer:
    """billing's durable consumer, bound, and the handler's metrics."""

    js: JetStreamContext
    sub: JetStreamContext.PullSubscription
    registry: CollectorRegistry
    metrics: BillingMetrics

    async def publish(self, *payloads: bytes) -> None:
        for payload in payloads:
            await self.js.publish(subjects.USAGE_RECORDED, payload)

    async def fetch(self, count: int, *, timeout_s: float = 10) -> list[Msg]:
        """Exactly ``count`` messages (several fetches if need be), as one batch."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        msgs: list[Msg] = []
        while len(msgs) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"got {len(msgs)} of {count} messages"
            try:
                msgs += await self.sub.fetch(count - len(msgs), timeout=min(left, 2))
            except TimeoutError:
                continue
        return msgs

    def handler(self, engine: AsyncEngine, catalog: Path) -> UsageHandler:
        return UsageHandler(
            sessions=db.make_sessionmaker(engine), prices=PriceBook(catalog), metrics=self.metrics
        )

    def count(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(f"switchyard_billing_{name}_total", labels) or 0

    async def idle(self) -> bool:
        info = await self.js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
        return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.fixture
async def consumer(nats_url: str) -> AsyncIterator[Consumer]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await ensure_pull_consumer(
            js,
            stream=subjects.USAGE_STREAM,
            durable=subjects.BILLING_DURABLE,
            filter_subject=subjects.USAGE_RECORDED,
        )
        sub = await js.pull_subscribe_bind(subjects.BILLING_DURABLE, stream=subjects.USAGE_STREAM)
        registry = CollectorRegistry()
        yield Consumer(js, sub, registry, BillingMetrics.register(registry))
    finally:
        await nc.close()


@pytest.fixture
def huge_catalog(catalog_path: Path) -> Path:
    """The test catalog plus a model whose events cost too much for the ledger's columns."""
    catalog_path.write_text(catalog_path.read_text() + HUGE_MODEL)
    return catalog_path


async def billed(engine: AsyncEngine, project: str) -> list[Decimal]:
    async with db.make_sessionmaker(engine)() as session:
        return list(
            (
                await session.exec(
                    select(LedgerEntry.total_amount).where(LedgerEntry.project_id == project)
                )
            ).all()
        )


async def test_poison_and_duplicates_inside_a_batch(
    consumer: Consumer, engine: AsyncEngine, catalog_path: Path
) -> None:
    project = f"proj-{uuid.uuid4().hex[:10]}"
    first, second, third = (usage(project) for _ in range(3))
    await consumer.publish(
        first.to_bytes(),
        b"{not json",
        second.to_bytes(),
        usage(project, model="no-such-model").to_bytes(),
        first.to_bytes(),  # the same event again, as after a crash between commit and ack
        third.to_bytes(),
    )
    batch = await consumer.fetch(6)
    await consumer.handler(engine, catalog_path).handle_batch(batch)

    assert await billed(engine, project) == [Decimal("0.0000207")] * 3
    assert consumer.count("events_billed") == 3
    assert consumer.count("events_duplicate") == 1
    assert consumer.count("events_poison") == 2
    assert await consumer.idle()  # everything acked or terminated, nothing to redeliver


async def test_an_event_failing_a_batch_is_set_aside_and_the_others_are_billed(
    consumer: Consumer, engine: AsyncEngine, huge_catalog: Path
) -> None:
    project = f"proj-{uuid.uuid4().hex[:10]}"
    good = [usage(project) for _ in range(2)]
    huge = usage(project, model="huge", tokens=100)
    await consumer.publish(good[0].to_bytes(), huge.to_bytes(), good[1].to_bytes())
    await consumer.handler(engine, huge_catalog).handle_batch(await consumer.fetch(3))

    assert await billed(engine, project) == [Decimal("0.0000207")] * 2
    assert consumer.count("events_billed") == 2
    assert consumer.count("events_retried", reason="unexpected") == 1
    info = await consumer.js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
    assert info.num_ack_pending == 1  # only the huge one, nak'ed for a later retry


async def test_a_database_outage_mid_batch_naks_it_and_redelivery_bills_once(
    consumer: Consumer, postgres_url: str, catalog_path: Path
) -> None:
    """The batch's entries are written, then a lock wait times out: all of it rolls back."""
    project, other = (f"proj-{uuid.uuid4().hex[:10]}" for _ in range(2))
    events = [usage(project) for _ in range(3)] + [usage(other)]
    admin = db.create_engine(postgres_url)
    # Lock waits over 300 ms fail with LockNotAvailable, an OperationalError: transient.
    impatient = db.create_engine(f"{postgres_url}?options=-c%20lock_timeout%3D300")
    try:
        async with db.make_sessionmaker(admin)() as session:
            top_up = CreditsTopUp(project_id=project, topup_id="t", amount=Decimal(1))
            await budgets.top_up(session=session, request=top_up, now=datetime.now(UTC))
        await consumer.publish(*(event.to_bytes() for event in events))
        handler = consumer.handler(impatient, catalog_path)
        async with admin.connect() as locker:
            await locker.execute(
                text("SELECT 1 FROM credits WHERE project_id = :p FOR UPDATE"), {"p": project}
            )
            await handler.handle_batch(await consumer.fetch(4))
            await locker.rollback()
        assert consumer.count("events_retried", reason="transient") == 4
        assert await billed(admin, project) == [] and await billed(admin, other) == []

        redelivered = await consumer.fetch(4)  # after the nak delay
        assert {msg.metadata.num_delivered for msg in redelivered} == {2}
        await handler.handle_batch(redelivered)
        assert await billed(admin, project) == [Decimal("0.0000207")] * 3
        assert await billed(admin, other) == [Decimal("0.0000207")]
        async with db.make_sessionmaker(admin)() as session:
            credit = await session.get(Credit, project)
            spend = (
                await session.exec(
                    select(SpendTotal.amount).where(SpendTotal.project_id == project)
                )
            ).all()
        assert credit is not None and credit.balance == Decimal("0.9999379")  # 1 - 3 * 0.0000207
        assert spend == [Decimal("0.0000621")]
        assert consumer.count("events_billed") == 4
        assert await consumer.idle()
    finally:
        await impatient.dispose()
        await admin.dispose()


async def test_the_pull_loop_lingers_after_a_short_batch_so_a_trickle_is_billed_in_batches(
    consumer: Consumer,
) -> None:
    """Events arriving 20 ms apart during the linger come back as one batch, not five."""
    sizes: list[int] = []
    stop = asyncio.Event()
    trickle: list[asyncio.Task[None]] = []

    async def publish_slowly() -> None:
        for _ in range(5):
            await asyncio.sleep(0.02)
            await consumer.publish(usage("proj-linger").to_bytes())

    async def handle(msgs: list[Msg]) -> None:
        sizes.append(len(msgs))
        for msg in msgs:
            await msg.ack()
        if len(sizes) == 1:
            trickle.append(asyncio.create_task(publish_slowly()))
        elif sum(sizes) >= 6:
            stop.set()

    await consumer.publish(usage("proj-linger").to_bytes())
    await asyncio.wait_for(
        pull_batches(
            consumer.sub, handle, stop=stop, batch_size=64, fetch_timeout_s=0.2, linger_s=0.5
        ),
        timeout=10,
    )
    await asyncio.gather(*trickle)
    assert sizes == [1, 5]
