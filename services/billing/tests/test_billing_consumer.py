"""The usage consumer against a real nats-server: exactly-once billing, poison terminated."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func
from sqlmodel import select

from billing.config import BillingSettings
from billing.handlers import UsageHandler
from billing.main import run
from billing.metrics import BillingMetrics
from billing.pricing import PriceBook
from billing.store.models import LedgerEntry, SpendTotal
from gateway_common import db, subjects
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.nats import ensure_streams
from gateway_common.runtime import ensure_pull_consumer
from gateway_common.testing import free_port, wait_for

pytestmark = pytest.mark.timeout(60)


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def usage(model: str, operation: str = "chat.completions", **tokens: int) -> UsageRecorded:
    return UsageRecorded(
        request_id="req",
        project_id="proj-consumer",
        operation=operation,
        model=model,
        provider="fake",
        deployment="fake/x",
        usage=TokenUsage(**tokens),
    )


async def scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_consumer_bills_each_event_exactly_once(
    nats_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    metrics_port = free_port()
    settings = BillingSettings(
        nats_url=nats_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}",
        catalog_path=catalog_path,
        metrics_port=metrics_port,
        batch_size=4,
    )
    events = [usage("chat-a", prompt_tokens=276) for _ in range(7)]
    events += [
        usage(
            "chat-a-latest",
            prompt_tokens=1000,
            cached_tokens=400,
            completion_tokens=300,
            reasoning_tokens=120,
        ),
        usage("chat-b", operation="responses", prompt_tokens=10, completion_tokens=5),
        usage("embed", operation="embeddings", prompt_tokens=12345),
    ]
    # 7 * 0.0000207 + (0.000045 + 0.000015 + 0.000054 + 0.000072) + (0.000011 + 0.000022)
    # + 0.0002469
    expected_total = Decimal("0.0006108")

    stop = asyncio.Event()
    service = asyncio.create_task(run(settings, stop))
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()

        async def consumer_ready() -> bool | None:
            try:
                return bool(await js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE))
            except NotFoundError:
                return None

        await wait_for(consumer_ready, timeout_s=60)  # a start on a loaded machine is slow
        for e in events:
            await js.publish(
                subjects.USAGE_RECORDED, e.to_bytes(), headers={"Nats-Msg-Id": e.event_id}
            )
        # A re-publish within the duplicate window: the stream drops it.
        ack = await js.publish(
            subjects.USAGE_RECORDED,
            events[0].to_bytes(),
            headers={"Nats-Msg-Id": events[0].event_id},
        )
        assert ack.duplicate
        # The same event under another message id, as after a crash between commit and ack:
        # it reaches billing, which must recognize it.
        await js.publish(
            subjects.USAGE_RECORDED, events[1].to_bytes(), headers={"Nats-Msg-Id": "redelivery"}
        )
        await js.publish(subjects.USAGE_RECORDED, b"{not json")
        await js.publish(
            subjects.USAGE_RECORDED, usage("no-such-model", prompt_tokens=1).to_bytes()
        )

        async def drained() -> bool | None:
            info = await js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
            done = info.num_pending == 0 and info.num_ack_pending == 0
            return True if done else None

        await wait_for(drained, timeout_s=20)
        info = await js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
        assert info.num_redelivered == 0  # poison was terminated, not nak'ed

        engine = db.create_engine(settings.resolved_database_url())
        try:
            async with db.make_sessionmaker(engine)() as session:
                count = (await session.exec(select(func.count()).select_from(LedgerEntry))).one()
                amounts = (await session.exec(select(LedgerEntry.total_amount))).all()
                spend = (await session.exec(select(SpendTotal.amount))).all()
        finally:
            await engine.dispose()
        assert count == len(events)
        assert sum(amounts, Decimal(0)) == expected_total
        assert spend == [expected_total]

        samples = await scrape(metrics_port)
        assert samples["switchyard_billing_events_billed_total"] == len(events)
        assert samples["switchyard_billing_events_duplicate_total"] == 1
        assert samples["switchyard_billing_events_poison_total"] == 2
        assert samples["switchyard_billing_lag_seconds_count"] == len(events)
    finally:
        stop.set()
        started = loop_time()
        await asyncio.wait_for(service, timeout=15)
        await nc.close()
    assert loop_time() - started < 5  # finishes the in-flight message, drains, no drain timeout


async def test_a_database_outage_naks_and_the_event_is_billed_on_redelivery(
    nats_url: str, catalog_path: Path, sqlite_url: str
) -> None:
    registry = CollectorRegistry()
    metrics = BillingMetrics.register(registry)
    prices = PriceBook(catalog_path)
    down = db.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    up = db.create_engine(sqlite_url)
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
        event = usage("chat-a", prompt_tokens=276)
        await js.publish(subjects.USAGE_RECORDED, event.to_bytes())

        [first] = await sub.fetch(1, timeout=5)
        await UsageHandler(sessions=db.make_sessionmaker(down), prices=prices, metrics=metrics)(
            first
        )
        assert (
            registry.get_sample_value(
                "switchyard_billing_events_retried_total", {"reason": "transient"}
            )
            == 1
        )

        [again] = await sub.fetch(1, timeout=5)  # back after the nak delay, never acked
        assert again.metadata.num_delivered == 2
        await UsageHandler(sessions=db.make_sessionmaker(up), prices=prices, metrics=metrics)(again)
        assert registry.get_sample_value("switchyard_billing_events_billed_total") == 1

        async with db.make_sessionmaker(up)() as session:
            amounts = (await session.exec(select(LedgerEntry.total_amount))).all()
        assert amounts == [Decimal("0.0000207")]
    finally:
        await nc.close()
        await down.dispose()
        await up.dispose()
