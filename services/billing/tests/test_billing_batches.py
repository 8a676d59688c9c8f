"""A batch is billed in one transaction exactly as its events would be one after the other."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing.store import budgets
from billing.store.models import (
    BudgetLease,
    Credit,
    KeySpendTotal,
    LedgerEntry,
    LedgerLineItem,
    SpendTotal,
)
from billing.store.repo import PricedUsage, record_usage, record_usages
from gateway_common import db
from gateway_common.billing_api import BudgetSet, CreditsTopUp, LeaseRelease, LeaseRequest
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import LineItem

pytestmark = pytest.mark.timeout(60)

NOW = datetime(2025, 5, 17, 12, 0, tzinfo=UTC)
POLICY = budgets.LeasePolicy(ttl=timedelta(seconds=30), settle=timedelta(seconds=60))


def priced(
    project: str, amount: str, *, key: str = "", lease: str = "", month: int = 5
) -> PricedUsage:
    """An event costing ``amount``, in two line items (so line items are checked per entry)."""
    event = UsageRecorded(
        occurred_at=datetime(2025, month, 17, 12, 0, tzinfo=UTC),
        request_id=uuid.uuid4().hex,
        project_id=project,
        api_key_id=key,
        operation="chat.completions",
        model="chat-a",
        provider="fake",
        deployment="fake/a",
        usage=TokenUsage(prompt_tokens=1, completion_tokens=1),
        budget_lease_id=lease,
    )
    half = Decimal(amount) / 2
    return PricedUsage(
        event,
        [
            LineItem("inference.chat_completions.in", 1, half, half, "in"),
            LineItem("inference.chat_completions.out", 1, half, half, "out"),
        ],
    )


async def write(engine: AsyncEngine, usages: list[PricedUsage]) -> frozenset[str]:
    async with db.make_sessionmaker(engine)() as session:
        return await record_usages(session=session, usages=usages, billed_at=NOW)


async def ledger(engine: AsyncEngine, project: str) -> tuple[int, int, Decimal | None]:
    """(entries, line items, spend in 2025-05) of ``project``."""
    async with db.make_sessionmaker(engine)() as session:
        entries = (
            await session.exec(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.project_id == project)
            )
        ).one()
        items = (
            await session.exec(
                select(func.count())
                .select_from(LedgerLineItem)
                .join(LedgerEntry, LedgerEntry.id == LedgerLineItem.entry_id)  # type: ignore[arg-type]
                .where(LedgerEntry.project_id == project)
            )
        ).one()
        spend = (
            await session.exec(
                select(SpendTotal.amount).where(
                    SpendTotal.project_id == project, SpendTotal.period == "2025-05"
                )
            )
        ).one_or_none()
    return entries, items, spend


async def test_duplicates_in_a_batch_and_across_batches_are_billed_once(
    engine: AsyncEngine,
) -> None:
    project = f"proj-{uuid.uuid4().hex[:10]}"
    a, b, c, d = (priced(project, amount) for amount in ("0.1", "0.02", "0.003", "0.0004"))
    first = await write(engine, [a, b, a, c, a])
    assert first == {a.event.event_id, b.event.event_id, c.event.event_id}
    second = await write(engine, [b, d, d, c])
    assert second == {d.event.event_id}
    assert await write(engine, [a, b, c, d]) == frozenset()
    assert await ledger(engine, project) == (4, 8, Decimal("0.1234"))
    async with db.make_sessionmaker(engine)() as session:
        assert not await record_usage(session=session, event=a.event, items=a.items)
    assert await write(engine, []) == frozenset()


@dataclass(frozen=True, slots=True)
class World:
    """Two projects with budgets, credits on the first, and three leases, one released."""

    a: str
    b: str
    lease_a: str
    lease_released: str
    lease_b: str

    def usages(self) -> list[PricedUsage]:
        return [
            priced(self.a, "0.1", key="k1", lease=self.lease_a),
            priced(self.a, "0.2", key="k2", lease=self.lease_released),
            priced(self.a, "0.15", key="k1", lease=self.lease_released),  # now fully billed
            priced(self.a, "0.05"),  # no key, no lease
            priced(self.b, "0.3", key="k1", lease=self.lease_b),
            priced(self.b, "0.05", key="k3", lease=self.lease_a),  # another project's lease
            priced(self.a, "0.01", key="k1", lease=self.lease_a, month=6),
        ]


async def world(engine: AsyncEngine) -> World:
    a, b = (f"proj-{uuid.uuid4().hex[:10]}" for _ in range(2))
    async with db.make_sessionmaker(engine)() as session:
        for project in (a, b):
            budget = BudgetSet(project_id=project, limit=Decimal(10))
            await budgets.set_budget(session=session, request=budget, now=NOW)
        top_up = CreditsTopUp(project_id=a, topup_id="t", amount=Decimal(1))
        await budgets.top_up(session=session, request=top_up, now=NOW)
        leases = []
        for project, want in ((a, "0.5"), (a, "0.3"), (b, "1")):
            request = LeaseRequest(edge_id="e", project_id=project, want=Decimal(want))
            granted = await budgets.grant_lease(
                session=session, request=request, policy=POLICY, now=NOW
            )
            leases.append(granted.lease_id)
        release = LeaseRelease(lease_id=leases[1], consumed=Decimal("0.3"))
        await budgets.release_lease(session=session, request=release, now=NOW)
    return World(a, b, *leases)


async def state(engine: AsyncEngine, w: World) -> dict[str, object]:
    """Everything billing changed, keyed by role (so two worlds compare equal)."""
    role = {w.a: "a", w.b: "b", w.lease_a: "la", w.lease_released: "lr", w.lease_b: "lb"}
    async with db.make_sessionmaker(engine)() as session:
        spend = (
            await session.exec(select(SpendTotal).where(SpendTotal.project_id.in_(role)))
        ).all()  # type: ignore[attr-defined]
        keys = (
            await session.exec(select(KeySpendTotal).where(KeySpendTotal.project_id.in_(role)))  # type: ignore[attr-defined]
        ).all()
        credits = (await session.exec(select(Credit).where(Credit.project_id.in_(role)))).all()  # type: ignore[attr-defined]
        leases = (
            await session.exec(select(BudgetLease).where(BudgetLease.lease_id.in_(role)))  # type: ignore[attr-defined]
        ).all()
    return {
        "spend": {(role[r.project_id], r.period): r.amount for r in spend},
        "key_spend": {(role[r.project_id], r.api_key_id, r.period): r.amount for r in keys},
        "credits": {role[r.project_id]: r.balance for r in credits},
        "leases": {role[r.lease_id]: (r.consumed, r.closed_at is not None) for r in leases},
    }


async def test_a_mixed_batch_equals_its_events_one_by_one(engine: AsyncEngine) -> None:
    batched, one_by_one = await world(engine), await world(engine)
    usages = batched.usages()
    assert await write(engine, usages) == {usage.event.event_id for usage in usages}
    for usage in one_by_one.usages():
        async with db.make_sessionmaker(engine)() as session:
            assert await record_usage(session=session, event=usage.event, items=usage.items)

    expected = {
        "spend": {
            ("a", "2025-05"): Decimal("0.5"),
            ("a", "2025-06"): Decimal("0.01"),
            ("b", "2025-05"): Decimal("0.35"),
        },
        "key_spend": {
            ("a", "k1", "2025-05"): Decimal("0.25"),
            ("a", "k2", "2025-05"): Decimal("0.2"),
            ("a", "k1", "2025-06"): Decimal("0.01"),
            ("b", "k1", "2025-05"): Decimal("0.3"),
            ("b", "k3", "2025-05"): Decimal("0.05"),
        },
        "credits": {"a": Decimal("0.49")},
        "leases": {
            "la": (Decimal("0.11"), False),  # b's event naming it is not counted
            "lr": (Decimal("0.35"), True),  # released at 0.3, billed 0.35: closed
            "lb": (Decimal("0.3"), False),
        },
    }
    assert await state(engine, batched) == expected
    assert await state(engine, one_by_one) == expected
