"""The ledger is exact and idempotent on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing.store.models import (
    METADATA,
    LedgerEntry,
    LedgerLineItem,
    SpendTotal,
    canonical_decimal,
)
from billing.store.repo import record_usage
from billing.store.reports import request_report
from gateway_common import db
from gateway_common.billing_api import RequestQuery
from gateway_common.catalog import Prices
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import LineItem, price_usage
from gateway_common.testing import schema_drift

PRICES = Prices(
    input=Decimal("0.000000075"),
    output=Decimal("0.0000003"),
    cached_input=Decimal("0.0000000375"),
)


def event(project: str, *, month: int = 5, **tokens: int) -> UsageRecorded:
    return UsageRecorded(
        occurred_at=datetime(2025, month, 17, 12, 0, tzinfo=UTC),
        request_id="req",
        project_id=project,
        operation="chat.completions",
        model="chat-a",
        provider="fake",
        deployment="fake/a",
        usage=TokenUsage(**tokens),
    )


async def record(engine: AsyncEngine, usage: UsageRecorded) -> bool:
    async with db.make_sessionmaker(engine)() as session:
        return await record_usage(session=session, event=usage, items=price_usage(usage, PRICES))


async def spend(engine: AsyncEngine, project: str, period: str) -> Decimal | None:
    async with db.make_sessionmaker(engine)() as session:
        return (
            await session.exec(
                select(SpendTotal.amount).where(
                    SpendTotal.project_id == project, SpendTotal.period == period
                )
            )
        ).one_or_none()


def test_migrations_match_the_models(db_url: str) -> None:
    assert schema_drift(db_url, METADATA) == []


async def test_the_same_event_twice_is_billed_once(engine: AsyncEngine) -> None:
    project = uuid.uuid4().hex
    usage = event(project, prompt_tokens=1276, cached_tokens=1000, completion_tokens=10)
    assert await record(engine, usage) is True
    assert await record(engine, usage) is False

    async with db.make_sessionmaker(engine)() as session:
        entries = (
            await session.exec(select(LedgerEntry).where(LedgerEntry.project_id == project))
        ).all()
        assert len(entries) == 1
        assert entries[0].total_amount == Decimal(
            "0.0000612"
        )  # 276*7.5e-8 + 1000*3.75e-8 + 10*3e-7
        items = (
            await session.exec(
                select(LedgerLineItem).where(LedgerLineItem.entry_id == entries[0].id)
            )
        ).all()
        assert sorted((i.sku, i.quantity, i.amount) for i in items) == [
            ("inference.chat_completions.in", 276, Decimal("0.0000207")),
            ("inference.chat_completions.in.cached", 1000, Decimal("0.0000375")),
            ("inference.chat_completions.out", 10, Decimal("0.000003")),
        ]
    assert await spend(engine, project, "2025-05") == Decimal("0.0000612")


async def test_the_request_metadata_is_kept_and_shown_by_the_request_lookup(
    engine: AsyncEngine,
) -> None:
    project = uuid.uuid4().hex
    tagged = event(project, prompt_tokens=5, completion_tokens=1).model_copy(
        update={"request_id": "req-tagged", "metadata": {"foo": "bar", "n": "1"}}
    )
    plain = event(project, prompt_tokens=5, completion_tokens=1).model_copy(
        update={"request_id": "req-plain"}
    )
    assert await record(engine, tagged) is True
    assert await record(engine, plain) is True
    async with db.make_sessionmaker(engine)() as session:
        report = await request_report(
            session=session, query=RequestQuery(project_id=project, request_id="req-tagged")
        )
        other = await request_report(
            session=session, query=RequestQuery(project_id=project, request_id="req-plain")
        )
    assert [e.metadata for e in report.entries] == [{"foo": "bar", "n": "1"}]
    assert [e.metadata for e in other.entries] == [None]


async def test_concurrent_events_add_up_exactly_per_month(engine: AsyncEngine) -> None:
    project = uuid.uuid4().hex
    events = [event(project, prompt_tokens=1) for _ in range(20)]
    events += [event(project, month=6, completion_tokens=3)]
    results = await asyncio.gather(*(record(engine, e) for e in events))
    assert all(results)
    assert await spend(engine, project, "2025-05") == Decimal("0.0000015")  # 20 * 7.5e-8
    assert await spend(engine, project, "2025-06") == Decimal("0.0000009")
    async with db.make_sessionmaker(engine)() as session:
        count = (
            await session.exec(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.project_id == project)
            )
        ).one()
    assert count == 21


async def test_amounts_that_do_not_fit_are_refused_not_rounded(engine: AsyncEngine) -> None:
    usage = event(uuid.uuid4().hex, prompt_tokens=1)
    too_fine = Decimal("0.0000000000000000001")  # 19 fractional digits
    line = LineItem("inference.chat_completions.in", 1, too_fine, too_fine, "x")
    async with db.make_sessionmaker(engine)() as session:
        with pytest.raises(StatementError, match="does not fit"):
            await record_usage(session=session, event=usage, items=[line])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("0.000020700"), "0.0000207"),
        (Decimal("2.07E-5"), "0.0000207"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0.0"), "0"),
        (
            Decimal("12345678901234567890.123456789012345678"),
            "12345678901234567890.123456789012345678",
        ),
    ],
)
def test_canonical_decimal(value: Decimal, text: str) -> None:
    assert canonical_decimal(value) == text


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("1E+20")])
def test_canonical_decimal_refuses(value: Decimal) -> None:
    with pytest.raises(ValueError):
        canonical_decimal(value)
