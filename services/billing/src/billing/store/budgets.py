"""Budgets, credits and budget leases: admission at the edge that cannot overrun a limit.

An edge does not ask billing about every request. It leases a slice of what
remains (``grant_lease``), admits requests locally against the slice, and
releases it when done (``release_lease``). A lease *holds* budget while it is
live::

    hold(L)  = max(L.granted - L.consumed, 0)
    live(L)  = L.closed_at is NULL and now < L.expires_at + settle
    held(B)  = sum of hold(L) over the live leases that budget B applies to

where ``L.consumed`` grows, in the ledger's own transaction, by every billed
entry that carries ``L``'s id: an amount moves from "held" to "spent" in one
commit and is never counted twice. The edge admits under ``L`` only before
``L.expires_at``; ``settle`` (longer than the longest request plus the billing
lag) keeps the hold until what was admitted has been billed. A release
replaces ``granted`` with what the edge says its requests cost, so the hold
shrinks to what is still unbilled, and the lease closes once the ledger has
caught up. A lease whose edge vanished is closed by ``reap_leases`` after
``expires_at + settle``.

For a budget B (a project's, a key's or a Gateway API endpoint's limit of the
month, or a project's prepaid credits)::

    remaining(B) = limit(B) - spent(B) - held(B)        (credits: balance - held)

**Invariant.** After every committed grant, for every budget B that applies
to it: ``spent(B) + held(B) <= limit(B)`` (measured when the grant commits),
i.e. the sum of grants never exceeds what remains. Hence, as long as each
admitted request costs at most what the edge reserved for it (true when
``max_tokens`` bounds it) and the ledger bills it within ``settle``, spend
never exceeds the limit, however many edges lease concurrently.

Why it holds:

* Grants of one project are serialized: the grant transaction first takes a
  per-project lock (PostgreSQL: ``pg_advisory_xact_lock``; SQLite:
  ``BEGIN IMMEDIATE``, the database's single writer lock), so each grant sees
  every earlier grant committed.
* Billing does not take that lock, but it commits spend, credits and
  ``consumed`` together, and the grant reads leases *before* spend and
  credits. Under READ COMMITTED a later statement sees a superset of the
  commits an earlier one saw, so a bill landing in between is seen as spent
  and still held: remaining is understated, never overstated.
* Releases and the reaper only lower holds; reading them late is conservative.

**Changing a limit.** ``set_budget`` and ``top_up`` commit, then billing
announces the change (``billing.budgets.changed.v1``, see ``billing.api``).
Raising a limit needs nothing more: the next grant sees it. Lowering one below
``spent + held`` cannot take back what edges already admitted, and billing
does not know how much of a live lease that is, so it never lowers a hold
itself (that could let the next grant overrun what is in flight). Instead
every edge, on the announcement, stops admitting under its leases of the
account and releases them once their requests end, reporting what they cost:
the holds shrink to exactly what is still unbilled, and the lowered limit
binds every later grant. Until then ``remaining`` is understated, never
overstated, and grants are refused (``remaining`` in the refusal is 0). An
edge that missed the announcement admits under its lease until the lease's
``expires_at`` at most, all of it within the hold: the invariant holds, and
the new limit binds once that lease expires (the lease TTL).

**Endpoint budgets.** A lease is asked for one (project, key, endpoint): the
endpoint a Gateway API call came through (``LeaseRequest.endpoint_id``, ""
for ``/v1``) is stored on the lease, so ``held`` of an endpoint's budget is
what the live leases *of that endpoint* hold, and its ``spent`` is the
endpoint's spend of the month (``endpoint_spend_totals``, counted by endpoint
id from every usage event that names it, leased or not). Endpoints belong to
one project, so the per-project lock serializes their grants too and the
invariant holds for them by the same argument.

Periods are UTC calendar months; a 'YYYY-MM' budget replaces the 'monthly'
one of the same scope for that month. Leases hold across a month boundary
(conservative for the new month).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, insert, text, update
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.billing_api import (
    Ack,
    BudgetScope,
    BudgetSet,
    BudgetState,
    CreditsReport,
    CreditState,
    CreditsTopUp,
    Lease,
    LeaseRelease,
    LeaseRequest,
    LimitedBy,
    SpendQuery,
    SpendReport,
)
from gateway_common.pricing import exact_sum

from .models import (
    Budget,
    BudgetLease,
    Credit,
    CreditTransaction,
    EndpointSpendTotal,
    KeySpendTotal,
    SpendTotal,
)
from .repo import billing_period

__all__ = [
    "LeasePolicy",
    "grant_lease",
    "reap_leases",
    "release_lease",
    "set_budget",
    "spend_report",
    "top_up",
]

_ZERO = Decimal(0)
#: The limit a budget of each scope is, in a lease's ``limited_by``.
_LIMITED_BY: dict[str, LimitedBy] = {
    "project": "project_budget",
    "key": "key_budget",
    "endpoint": "endpoint_budget",
}
#: The scopes that exist, in the order budgets are reported in.
_SCOPE_OF: dict[str, BudgetScope] = {"project": "project", "key": "key", "endpoint": "endpoint"}
_SCOPES = tuple(_SCOPE_OF)


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """How long a lease admits (``ttl``) and how long it holds after that (``settle``)."""

    ttl: timedelta
    settle: timedelta


@dataclass(frozen=True, slots=True)
class _Limits:
    """What bounds a (project, key, endpoint) right now: remaining amounts per budget, in one
    read."""

    budgets: list[tuple[Budget, Decimal, Decimal]]  # (budget, spent, held)
    credits: tuple[Decimal, Decimal] | None  # (balance, held)

    def remaining(self) -> list[tuple[LimitedBy, Decimal]]:
        found: list[tuple[LimitedBy, Decimal]] = [
            (_LIMITED_BY[budget.scope], exact_sum((budget.limit_amount, -spent, -held)))
            for budget, spent, held in self.budgets
        ]
        if self.credits is not None:
            balance, held = self.credits
            found.append(("credits", exact_sum((balance, -held))))
        return found


async def grant_lease(
    *, session: AsyncSession, request: LeaseRequest, policy: LeasePolicy, now: datetime
) -> Lease:
    """Grant up to ``request.want`` of what remains, in one serialized transaction (committed).

    Nothing is granted (``granted`` 0, no ``lease_id``) when less than
    ``request.min`` (or nothing) remains; then ``remaining`` says how much did.
    ``limited_by`` names the tightest budget whenever it cut the grant. ``unlimited`` when no
    budget or credits apply to the project, key and endpoint: no row is written.
    """
    async with session.begin():
        await _lock_project(session, request.project_id)
        limits = await _limits(
            session,
            request.project_id,
            request.api_key_id,
            request.endpoint_id,
            now=now,
            settle=policy.settle,
        )
        expires_at = now + policy.ttl
        remaining = limits.remaining()
        if not remaining:
            return Lease(expires_at=expires_at, unlimited=True)
        limited_by, tightest = min(remaining, key=lambda pair: pair[1])
        granted = min(request.want, max(tightest, _ZERO))
        cut: LimitedBy = limited_by if granted < request.want else ""
        if granted <= _ZERO or granted < request.min:
            return Lease(
                expires_at=expires_at, limited_by=limited_by, remaining=max(tightest, _ZERO)
            )
        lease_id = uuid.uuid4().hex
        await session.exec(
            insert(BudgetLease).values(
                lease_id=lease_id,
                edge_id=request.edge_id,
                project_id=request.project_id,
                api_key_id=request.api_key_id,
                endpoint_id=request.endpoint_id,
                granted=granted,
                consumed=_ZERO,
                created_at=now,
                expires_at=expires_at,
            )
        )
    return Lease(lease_id=lease_id, granted=granted, expires_at=expires_at, limited_by=cut)


async def release_lease(*, session: AsyncSession, request: LeaseRelease, now: datetime) -> Ack:
    """End admission under a lease and shrink its hold to ``consumed`` not yet billed.

    ``not_found`` for an unknown or already closed lease. Idempotent in effect:
    a second release with the same ``consumed`` changes nothing that matters.
    """
    async with session.begin():
        lease = (
            await session.exec(
                select(BudgetLease)
                .where(col(BudgetLease.lease_id) == request.lease_id)
                .with_for_update()
            )
        ).one_or_none()
        if lease is None or lease.closed_at is not None:
            return Ack(status="not_found", message=f"no open lease {request.lease_id!r}")
        await session.exec(
            update(BudgetLease)
            .where(col(BudgetLease.lease_id) == lease.lease_id)
            .values(
                granted=request.consumed,
                released_at=now,
                expires_at=min(_aware(lease.expires_at, now), now),
                closed_at=now if lease.consumed >= request.consumed else None,
            )
        )
    return Ack()


async def reap_leases(*, session: AsyncSession, policy: LeasePolicy, now: datetime) -> int:
    """Close every lease past ``expires_at + settle`` (edge gone or bills settled); the count."""
    async with session.begin():
        result = await session.exec(
            update(BudgetLease)
            .where(
                col(BudgetLease.closed_at).is_(None),
                col(BudgetLease.expires_at) <= now - policy.settle,
            )
            .values(closed_at=now)
        )
    return int(result.rowcount or 0)


async def set_budget(*, session: AsyncSession, request: BudgetSet, now: datetime) -> Ack:
    """Create, change or (``limit`` None) delete one budget; committed (then announced).

    Leases granted before stay as they are, holds included (see "Changing a
    limit" in the module docstring).
    """
    scope_id = request.scope_id
    this_budget = (
        col(Budget.project_id) == request.project_id,
        col(Budget.scope) == request.scope,
        col(Budget.scope_id) == scope_id,
        col(Budget.period) == request.period,
    )
    async with session.begin():
        await _lock_project(session, request.project_id)
        await session.exec(delete(Budget).where(*this_budget))
        if request.limit is not None:
            await session.exec(
                insert(Budget).values(
                    project_id=request.project_id,
                    scope=request.scope,
                    scope_id=scope_id,
                    period=request.period,
                    limit_amount=request.limit,
                    updated_at=now,
                )
            )
    return Ack()


async def top_up(*, session: AsyncSession, request: CreditsTopUp, now: datetime) -> CreditsReport:
    """Add credits once per ``topup_id`` (committed); a repeat reports ``applied`` False.

    Runs under the project lock, so two top-ups of a new project cannot both
    create its balance row and a repeat cannot race its original.
    """
    async with session.begin():
        await _lock_project(session, request.project_id)
        seen = (
            await session.exec(
                select(col(CreditTransaction.id)).where(
                    col(CreditTransaction.project_id) == request.project_id,
                    col(CreditTransaction.topup_id) == request.topup_id,
                )
            )
        ).first()
        if seen is not None:
            credit = await session.get(Credit, request.project_id, populate_existing=True)
            balance = _ZERO if credit is None else credit.balance
            return CreditsReport(project_id=request.project_id, balance=balance, applied=False)
        await session.exec(
            insert(CreditTransaction).values(
                project_id=request.project_id,
                topup_id=request.topup_id,
                amount=request.amount,
                note=request.note,
                created_at=now,
            )
        )
        balance = await _add_credits(session, request.project_id, request.amount, now)
    return CreditsReport(project_id=request.project_id, balance=balance, applied=True)


async def spend_report(
    *, session: AsyncSession, query: SpendQuery, policy: LeasePolicy, now: datetime
) -> SpendReport:
    """Spend of the period, and every budget and the credits that apply, with what remains."""
    period = query.period or billing_period(now)
    async with session.begin():
        limits = await _limits(
            session,
            query.project_id,
            query.api_key_id,
            query.endpoint_id,
            now=now,
            settle=policy.settle,
            period=period,
        )
        project_spend = await _spent(session, query.project_id, period)
        key_spend = (
            await _spent(session, query.project_id, period, api_key_id=query.api_key_id)
            if query.api_key_id
            else None
        )
        endpoint_spend = (
            await _spent(session, query.project_id, period, endpoint_id=query.endpoint_id)
            if query.endpoint_id
            else None
        )
    budgets = [
        BudgetState(
            scope=_SCOPE_OF[budget.scope],
            scope_id=budget.scope_id,
            period=budget.period,
            limit=budget.limit_amount,
            spent=spent,
            held=held,
            remaining=max(exact_sum((budget.limit_amount, -spent, -held)), _ZERO),
        )
        for budget, spent, held in limits.budgets
    ]
    credits = None
    if limits.credits is not None:
        balance, held = limits.credits
        credits = CreditState(
            balance=balance, held=held, remaining=max(exact_sum((balance, -held)), _ZERO)
        )
    return SpendReport(
        project_id=query.project_id,
        period=period,
        project_spend=project_spend,
        key_spend=key_spend,
        endpoint_spend=endpoint_spend,
        budgets=budgets,
        credits=credits,
    )


async def _lock_project(session: AsyncSession, project_id: str) -> None:
    """Serialize this transaction with every other grant of the project (see the module doc)."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"switchyard.billing.budget:{project_id}"},
        )
    else:
        # pysqlite starts a transaction lazily at the first write, so reads before it would
        # run outside any transaction; taking the writer lock up front makes them consistent.
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _limits(
    session: AsyncSession,
    project_id: str,
    api_key_id: str,
    endpoint_id: str = "",
    *,
    now: datetime,
    settle: timedelta,
    period: str | None = None,
) -> _Limits:
    """The budgets and credits that apply, with spend and holds; leases are read FIRST."""
    period = period or billing_period(now)
    leases = (
        await session.exec(
            select(BudgetLease).where(
                col(BudgetLease.project_id) == project_id,
                col(BudgetLease.closed_at).is_(None),
                col(BudgetLease.expires_at) > now - settle,
            )
        )
    ).all()
    held_project = exact_sum(max(lease.granted - lease.consumed, _ZERO) for lease in leases)
    held_key = exact_sum(
        max(lease.granted - lease.consumed, _ZERO)
        for lease in leases
        if api_key_id and lease.api_key_id == api_key_id
    )
    held_endpoint = exact_sum(
        max(lease.granted - lease.consumed, _ZERO)
        for lease in leases
        if endpoint_id and lease.endpoint_id == endpoint_id
    )
    budgets: list[tuple[Budget, Decimal, Decimal]] = []
    for budget in await _applicable_budgets(session, project_id, api_key_id, endpoint_id, period):
        if budget.scope == "project":
            spent, held = await _spent(session, project_id, period), held_project
        elif budget.scope == "key":
            spent = await _spent(session, project_id, period, api_key_id=api_key_id)
            held = held_key
        else:
            spent = await _spent(session, project_id, period, endpoint_id=endpoint_id)
            held = held_endpoint
        budgets.append((budget, spent, held))
    credit = await session.get(Credit, project_id, populate_existing=True)
    credits = None if credit is None else (credit.balance, held_project)
    return _Limits(budgets=budgets, credits=credits)


async def _applicable_budgets(
    session: AsyncSession, project_id: str, api_key_id: str, endpoint_id: str, period: str
) -> Sequence[Budget]:
    """The project's, the key's and the endpoint's budget for ``period`` (a dated one beats
    'monthly')."""
    scopes = [(col(Budget.scope) == "project") & (col(Budget.scope_id) == project_id)]
    if api_key_id:
        scopes.append((col(Budget.scope) == "key") & (col(Budget.scope_id) == api_key_id))
    if endpoint_id:
        scopes.append((col(Budget.scope) == "endpoint") & (col(Budget.scope_id) == endpoint_id))
    rows = (
        await session.exec(
            select(Budget).where(
                col(Budget.project_id) == project_id,
                or_(*scopes),
                col(Budget.period).in_(("monthly", period)),
            )
        )
    ).all()
    chosen: dict[str, Budget] = {}
    for row in rows:
        if row.scope not in chosen or row.period != "monthly":
            chosen[row.scope] = row
    return [chosen[scope] for scope in _SCOPES if scope in chosen]


async def _spent(
    session: AsyncSession,
    project_id: str,
    period: str,
    *,
    api_key_id: str = "",
    endpoint_id: str = "",
) -> Decimal:
    """Spend of the month: the project's, or one key's, or one endpoint's."""
    if api_key_id:
        query = select(col(KeySpendTotal.amount)).where(
            col(KeySpendTotal.project_id) == project_id,
            col(KeySpendTotal.api_key_id) == api_key_id,
            col(KeySpendTotal.period) == period,
        )
    elif endpoint_id:
        query = select(col(EndpointSpendTotal.amount)).where(
            col(EndpointSpendTotal.project_id) == project_id,
            col(EndpointSpendTotal.endpoint_id) == endpoint_id,
            col(EndpointSpendTotal.period) == period,
        )
    else:
        query = select(col(SpendTotal.amount)).where(
            col(SpendTotal.project_id) == project_id, col(SpendTotal.period) == period
        )
    found: Decimal | None = (await session.exec(query)).one_or_none()
    return found if found is not None else _ZERO


async def _add_credits(
    session: AsyncSession, project_id: str, amount: Decimal, now: datetime
) -> Decimal:
    """Add to the balance (creating the row); the new balance. Called under the project lock."""
    credit = (
        await session.exec(
            select(Credit).where(col(Credit.project_id) == project_id).with_for_update()
        )
    ).one_or_none()
    if credit is None:
        await session.exec(
            insert(Credit).values(project_id=project_id, balance=amount, updated_at=now)
        )
        return amount
    balance = exact_sum((credit.balance, amount))
    await session.exec(
        update(Credit)
        .where(col(Credit.project_id) == project_id)
        .values(balance=balance, updated_at=now)
    )
    return balance


def _aware(moment: datetime, like: datetime) -> datetime:
    """SQLite returns naive datetimes (stored as UTC); give them ``like``'s zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=like.tzinfo)
