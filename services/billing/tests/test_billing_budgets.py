"""Budgets, credits and leases on SQLite and PostgreSQL: grants never exceed what remains."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select

from billing.store import budgets
from billing.store.models import BudgetLease
from billing.store.repo import record_usage
from gateway_common import db
from gateway_common.billing_api import (
    BudgetSet,
    CreditsTopUp,
    Lease,
    LeaseRelease,
    LeaseRequest,
    SpendQuery,
)
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.pricing import LineItem

pytestmark = pytest.mark.timeout(60)

POLICY = budgets.LeasePolicy(ttl=timedelta(seconds=30), settle=timedelta(seconds=60))
NOW = datetime(2025, 5, 17, 12, 0, tzinfo=UTC)


def new_project() -> str:
    return f"proj-{uuid.uuid4().hex[:12]}"


async def lease(
    engine: AsyncEngine,
    project: str,
    want: str,
    *,
    key: str = "",
    endpoint: str = "",
    edge: str = "edge-a",
    min: Decimal = Decimal(0),
) -> Lease:
    request = LeaseRequest(
        edge_id=edge,
        project_id=project,
        api_key_id=key,
        endpoint_id=endpoint,
        want=Decimal(want),
        min=min,
    )
    async with db.make_sessionmaker(engine)() as session:
        return await budgets.grant_lease(session=session, request=request, policy=POLICY, now=NOW)


async def set_budget(engine: AsyncEngine, project: str, limit: str | None, **kw: str) -> None:
    request = BudgetSet(project_id=project, limit=None if limit is None else Decimal(limit), **kw)
    async with db.make_sessionmaker(engine)() as session:
        assert (await budgets.set_budget(session=session, request=request, now=NOW)).status == "ok"


async def bill(
    engine: AsyncEngine,
    project: str,
    amount: str,
    *,
    lease_id: str = "",
    key: str = "",
    endpoint: str = "",
) -> None:
    event = UsageRecorded(
        occurred_at=NOW,
        request_id=uuid.uuid4().hex,
        project_id=project,
        api_key_id=key,
        operation="chat.completions",
        model="chat-a",
        provider="fake",
        deployment="fake/a",
        usage=TokenUsage(prompt_tokens=1),
        budget_lease_id=lease_id,
        endpoint="slug" if endpoint else "",
        endpoint_id=endpoint,
    )
    item = LineItem("inference.chat_completions.in", 1, Decimal(amount), Decimal(amount), "x")
    async with db.make_sessionmaker(engine)() as session:
        assert await record_usage(session=session, event=event, items=[item])


async def report(
    engine: AsyncEngine, project: str, key: str = "", *, endpoint: str = "", now: datetime = NOW
):
    async with db.make_sessionmaker(engine)() as session:
        return await budgets.spend_report(
            session=session,
            query=SpendQuery(project_id=project, api_key_id=key, endpoint_id=endpoint),
            policy=POLICY,
            now=now,
        )


async def test_without_budget_or_credits_a_lease_is_unlimited(engine: AsyncEngine) -> None:
    granted = await lease(engine, new_project(), "5")
    assert granted.unlimited and granted.lease_id == "" and granted.granted == 0
    assert granted.expires_at == NOW + POLICY.ttl


async def test_grants_stop_at_the_limit(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "1.00")
    first = await lease(engine, project, "0.3")
    assert (first.granted, first.limited_by) == (Decimal("0.3"), "")
    second = await lease(engine, project, "1")
    assert (second.granted, second.limited_by) == (Decimal("0.7"), "project_budget")
    third = await lease(engine, project, "0.1")
    assert (third.lease_id, third.granted, third.limited_by) == ("", 0, "project_budget")
    state = await report(engine, project)
    assert (state.budgets[0].held, state.budgets[0].remaining) == (Decimal(1), 0)


async def invariant_holds(engine: AsyncEngine, project: str, key: str = "") -> None:
    """spent + held <= limit for every budget that applies (the module's invariant)."""
    for state in (await report(engine, project, key)).budgets:
        assert state.spent + state.held <= state.limit, state


async def release(engine: AsyncEngine, lease_id: str, consumed: str) -> None:
    request = LeaseRelease(lease_id=lease_id, consumed=Decimal(consumed))
    async with db.make_sessionmaker(engine)() as session:
        assert (
            await budgets.release_lease(session=session, request=request, now=NOW)
        ).status == "ok"


async def test_a_refusal_says_what_remains_of_the_tightest_limit(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "0.05")
    refused = await lease(engine, project, "1", min=Decimal("0.06"))
    assert (refused.granted, refused.limited_by, refused.remaining) == (
        0,
        "project_budget",
        Decimal("0.05"),
    )
    assert (await lease(engine, project, "1", min=Decimal("0.05"))).remaining is None


async def test_a_lowered_budget_keeps_holds_and_grants_nothing_until_leases_are_released(
    engine: AsyncEngine,
) -> None:
    """Lowered below spent + held: what edges may have admitted stays held (billing cannot
    know it), no grant is made until the edges release their leases, and after that every
    grant fits the new limit; the invariant holds at each step."""
    project = new_project()
    await set_budget(engine, project, "1")
    a = await lease(engine, project, "0.4", edge="edge-a")
    b = await lease(engine, project, "0.4", edge="edge-b")
    await bill(engine, project, "0.1", lease_id=a.lease_id)
    await set_budget(engine, project, "0.3")
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held, state.remaining) == (Decimal("0.1"), Decimal("0.7"), 0)
    refused = await lease(engine, project, "0.05", min=Decimal("0.01"))
    assert (refused.granted, refused.limited_by, refused.remaining) == (0, "project_budget", 0)
    # The edges drop their leases on the announcement and report what they admitted.
    await release(engine, a.lease_id, "0.15")  # 0.1 billed, 0.05 still in the ledger's way
    await release(engine, b.lease_id, "0")
    grant = await lease(engine, project, "1")
    assert (grant.granted, grant.limited_by) == (Decimal("0.15"), "project_budget")
    await invariant_holds(engine, project)
    await bill(engine, project, "0.05", lease_id=a.lease_id)
    await bill(engine, project, "0.15", lease_id=grant.lease_id)
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held, state.remaining) == (Decimal("0.3"), 0, 0)


async def test_a_raised_budget_is_granted_at_once(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "0.1")
    assert (await lease(engine, project, "0.1")).granted == Decimal("0.1")
    assert (await lease(engine, project, "0.1", min=Decimal("0.1"))).granted == 0
    await set_budget(engine, project, "0.5")
    assert (await lease(engine, project, "1")).granted == Decimal("0.4")
    await invariant_holds(engine, project)


async def test_a_lowered_key_budget_binds_that_key_only(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "1")
    await set_budget(engine, project, "0.5", scope="key", api_key_id="k1")
    k1 = await lease(engine, project, "0.4", key="k1")
    await set_budget(engine, project, "0.2", scope="key", api_key_id="k1")
    assert (await lease(engine, project, "0.1", key="k1")).limited_by == "key_budget"
    assert (await lease(engine, project, "0.1", key="k2")).granted == Decimal("0.1")
    await release(engine, k1.lease_id, "0.05")
    assert (await lease(engine, project, "1", key="k1")).granted == Decimal("0.15")
    await invariant_holds(engine, project, "k1")


async def test_min_refuses_a_slice_too_small_to_use(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "0.05")
    refused = await lease(engine, project, "1", min=Decimal("0.06"))
    assert refused.granted == 0 and refused.lease_id == ""
    assert (await lease(engine, project, "1", min=Decimal("0.05"))).granted == Decimal("0.05")


async def test_billing_moves_an_amount_from_held_to_spent_once(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "1")
    granted = await lease(engine, project, "0.5")
    await bill(engine, project, "0.2", lease_id=granted.lease_id)
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held, state.remaining) == (
        Decimal("0.2"),
        Decimal("0.3"),
        Decimal("0.5"),
    )
    # Spend beyond the lease is spend all the same; the lease holds nothing more.
    await bill(engine, project, "0.4", lease_id=granted.lease_id)
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held, state.remaining) == (Decimal("0.6"), 0, Decimal("0.4"))


async def test_release_holds_what_is_unbilled_then_closes(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "1")
    granted = await lease(engine, project, "0.5")
    async with db.make_sessionmaker(engine)() as session:
        release = LeaseRelease(lease_id=granted.lease_id, consumed=Decimal("0.125"))
        assert (
            await budgets.release_lease(session=session, request=release, now=NOW)
        ).status == "ok"
    [state] = (await report(engine, project)).budgets
    assert state.held == Decimal("0.125")  # reported cost not yet in the ledger
    await bill(engine, project, "0.125", lease_id=granted.lease_id)
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held) == (Decimal("0.125"), 0)
    async with db.make_sessionmaker(engine)() as session:
        row = await session.get(BudgetLease, granted.lease_id)
    assert row is not None and row.closed_at is not None
    async with db.make_sessionmaker(engine)() as session:
        again = await budgets.release_lease(session=session, request=release, now=NOW)
    assert again.status == "not_found"


async def test_an_abandoned_lease_holds_until_settled_then_is_reaped(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "1")
    granted = await lease(engine, project, "0.4")
    holding_until = NOW + POLICY.ttl + POLICY.settle
    assert (await report(engine, project, now=holding_until - timedelta(seconds=1))).budgets[
        0
    ].held == Decimal("0.4")
    assert (await report(engine, project, now=holding_until)).budgets[0].held == 0
    async with db.make_sessionmaker(engine)() as session:
        assert await budgets.reap_leases(session=session, policy=POLICY, now=holding_until) >= 1
    async with db.make_sessionmaker(engine)() as session:
        row = await session.get(BudgetLease, granted.lease_id)
    assert row is not None and row.closed_at is not None


async def test_key_budget_and_dated_budget(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "10")
    await set_budget(engine, project, "2", period="2025-05")  # replaces 'monthly' in May
    await set_budget(engine, project, "0.5", scope="key", api_key_id="k1")
    await bill(engine, project, "0.25", key="k1")
    key_lease = await lease(engine, project, "5", key="k1")
    assert (key_lease.granted, key_lease.limited_by) == (Decimal("0.25"), "key_budget")
    other = await lease(engine, project, "5", key="k2")
    assert (other.granted, other.limited_by) == (Decimal("1.5"), "project_budget")
    state = await report(engine, project, "k1")
    assert [(b.scope, b.period, b.limit) for b in state.budgets] == [
        ("project", "2025-05", Decimal(2)),
        ("key", "monthly", Decimal("0.5")),
    ]
    assert (state.project_spend, state.key_spend) == (Decimal("0.25"), Decimal("0.25"))
    await set_budget(engine, project, None, scope="key", api_key_id="k1")
    assert len((await report(engine, project, "k1")).budgets) == 1


async def test_credits_top_up_once_bound_leases_and_are_debited(engine: AsyncEngine) -> None:
    project = new_project()
    top_up = CreditsTopUp(project_id=project, topup_id="t-1", amount=Decimal("0.75"))
    async with db.make_sessionmaker(engine)() as session:
        first = await budgets.top_up(session=session, request=top_up, now=NOW)
        repeat = await budgets.top_up(session=session, request=top_up, now=NOW)
    assert (first.applied, first.balance) == (True, Decimal("0.75"))
    assert (repeat.applied, repeat.balance) == (False, Decimal("0.75"))
    granted = await lease(engine, project, "1")
    assert (granted.granted, granted.limited_by) == (Decimal("0.75"), "credits")
    await bill(engine, project, "0.5", lease_id=granted.lease_id)
    credits = (await report(engine, project)).credits
    assert credits is not None
    assert (credits.balance, credits.held, credits.remaining) == (
        Decimal("0.25"),
        Decimal("0.25"),
        0,
    )


async def test_concurrent_grants_from_two_edges_never_exceed_the_limit(
    engine: AsyncEngine,
) -> None:
    """200 lease requests at once, 20 sessions deep, while bills land: grants sum to the limit."""
    project = new_project()
    await set_budget(engine, project, "1.00")
    first = await lease(engine, project, "0.1")

    async def billing() -> None:
        for _ in range(10):  # spend under the first lease while the others are being granted
            await bill(engine, project, "0.01", lease_id=first.lease_id)

    grants, _ = await asyncio.gather(
        asyncio.gather(*(lease(engine, project, "0.07", edge=f"edge-{i % 2}") for i in range(200))),
        billing(),
    )
    total = sum((g.granted for g in grants), first.granted)
    assert total == Decimal("1.00")
    assert sum(1 for g in grants if g.granted) == 13  # 12 * 0.07 + 0.06, after the first 0.1
    async with db.make_sessionmaker(engine)() as session:
        rows = (
            await session.exec(select(BudgetLease).where(BudgetLease.project_id == project))
        ).all()
    assert sum((row.granted for row in rows), Decimal(0)) == Decimal("1.00")
    [state] = (await report(engine, project)).budgets
    assert (state.spent, state.held, state.remaining) == (Decimal("0.1"), Decimal("0.9"), 0)


async def test_an_endpoint_budget_bounds_that_endpoints_leases_only(engine: AsyncEngine) -> None:
    """Spend counted by endpoint id (leased or not), holds of that endpoint's leases only."""
    project = new_project()
    await set_budget(engine, project, "1.00", scope="endpoint", endpoint_id="ep-1")
    await bill(engine, project, "0.25", endpoint="ep-1")  # admitted while it had no budget
    await bill(engine, project, "5", endpoint="ep-2")  # another endpoint's spend
    first = await lease(engine, project, "0.5", key="k1", endpoint="ep-1")
    assert (first.granted, first.limited_by) == (Decimal("0.5"), "")
    second = await lease(engine, project, "1", key="k2", endpoint="ep-1")  # any key
    assert (second.granted, second.limited_by) == (Decimal("0.25"), "endpoint_budget")
    refused = await lease(engine, project, "0.1", key="k1", endpoint="ep-1", min=Decimal("0.1"))
    assert (refused.granted, refused.limited_by, refused.remaining) == (
        0,
        "endpoint_budget",
        0,
    )
    assert (await lease(engine, project, "3", key="k1", endpoint="ep-2")).unlimited
    assert (await lease(engine, project, "3", key="k1")).unlimited  # /v1: no endpoint
    state = await report(engine, project, endpoint="ep-1")
    assert [(b.scope, b.scope_id, b.spent, b.held, b.remaining) for b in state.budgets] == [
        ("endpoint", "ep-1", Decimal("0.25"), Decimal("0.75"), 0)
    ]
    assert (state.project_spend, state.endpoint_spend) == (Decimal("5.25"), Decimal("0.25"))
    await bill(engine, project, "0.5", lease_id=first.lease_id, endpoint="ep-1")
    await release(engine, first.lease_id, "0.5")
    await release(engine, second.lease_id, "0")
    again = await lease(engine, project, "1", endpoint="ep-1")
    assert (again.granted, again.limited_by) == (Decimal("0.25"), "endpoint_budget")
    await invariant_holds_for_endpoint(engine, project, "ep-1")
    await set_budget(engine, project, None, scope="endpoint", endpoint_id="ep-1")
    assert (await lease(engine, project, "3", endpoint="ep-1")).unlimited


async def test_the_tightest_of_project_key_and_endpoint_budgets_binds(engine: AsyncEngine) -> None:
    project = new_project()
    await set_budget(engine, project, "3")
    await set_budget(engine, project, "2", scope="key", api_key_id="k1")
    await set_budget(engine, project, "1", scope="endpoint", endpoint_id="ep-1")
    granted = await lease(engine, project, "5", key="k1", endpoint="ep-1")
    assert (granted.granted, granted.limited_by) == (Decimal(1), "endpoint_budget")
    granted = await lease(engine, project, "5", key="k1")
    assert (granted.granted, granted.limited_by) == (Decimal(1), "key_budget")
    granted = await lease(engine, project, "5", key="k2")
    assert (granted.granted, granted.limited_by) == (Decimal(1), "project_budget")


async def test_concurrent_grants_never_exceed_an_endpoint_budget(engine: AsyncEngine) -> None:
    """200 lease requests at once on one endpoint, over several keys: grants sum to its limit."""
    project = new_project()
    await set_budget(engine, project, "1.00", scope="endpoint", endpoint_id="ep-1")
    grants = await asyncio.gather(
        *(
            lease(engine, project, "0.07", key=f"k{i % 3}", endpoint="ep-1", edge=f"edge-{i % 2}")
            for i in range(200)
        )
    )
    assert sum((g.granted for g in grants), Decimal(0)) == Decimal("1.00")
    await invariant_holds_for_endpoint(engine, project, "ep-1")


async def invariant_holds_for_endpoint(engine: AsyncEngine, project: str, endpoint: str) -> None:
    for state in (await report(engine, project, endpoint=endpoint)).budgets:
        assert state.spent + state.held <= state.limit, state
