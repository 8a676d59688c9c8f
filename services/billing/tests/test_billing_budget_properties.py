"""Property test of reserve -> settle budget leases (issue 19, drill d07), both backends.

Hypothesis draws sequences of operations on one project's monthly budget: an edge
leases a slice (``grant_lease``), bills requests under a lease within what it was
granted (``record_usage`` with the lease's id), and releases a lease reporting
what its requests cost (``release_lease``). A model of the module's arithmetic
(``hold = max(granted - consumed, 0)`` over the open leases) says what each grant
must be; after every step the invariant of ``billing.store.budgets`` is checked
on the real ledger: ``spent + held <= limit``, and spend never exceeds the limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from services.billing.tests.test_billing_budgets import (
    bill,
    lease,
    new_project,
    release,
    report,
    set_budget,
)

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class Grant:
    cents: int


@dataclass(frozen=True)
class Bill:
    which: int
    cents: int


@dataclass(frozen=True)
class Release:
    which: int
    extra_cents: int  # reported beyond what was billed: still in flight, not yet billed


_ops = st.lists(
    st.one_of(
        st.builds(Grant, cents=st.integers(1, 120)),
        st.builds(Bill, which=st.integers(0, 20), cents=st.integers(1, 60)),
        st.builds(Release, which=st.integers(0, 20), extra_cents=st.integers(0, 10)),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class _Lease:
    lease_id: str
    granted: Decimal
    consumed: Decimal = Decimal(0)
    released: bool = False

    @property
    def hold(self) -> Decimal:
        return max(self.granted - self.consumed, Decimal(0))


@settings(
    max_examples=int(os.environ.get("SWITCHYARD_PROPERTY_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(limit_cents=st.integers(1, 300), ops=_ops)
async def test_grants_never_exceed_what_remains(
    engine: AsyncEngine, limit_cents: int, ops: list[Grant | Bill | Release]
) -> None:
    project = new_project()
    limit = limit_cents * _CENT
    await set_budget(engine, project, str(limit))
    leases: list[_Lease] = []
    spent = Decimal(0)
    for op in ops:
        open_ = [x for x in leases if not x.released or x.hold > 0]
        if isinstance(op, Grant):
            want = op.cents * _CENT
            remaining = limit - spent - sum((x.hold for x in open_), Decimal(0))
            expect = min(want, max(remaining, Decimal(0)))
            got = await lease(engine, project, str(want))
            assert got.granted == expect, (op, remaining)
            assert bool(got.lease_id) == (expect > 0)
            if got.lease_id:
                leases.append(_Lease(got.lease_id, got.granted))
        elif isinstance(op, Bill):
            admitting = [x for x in leases if not x.released and x.consumed < x.granted]
            if not admitting:
                continue
            target = admitting[op.which % len(admitting)]
            # The edge admits only within the slice it was granted.
            amount = min(op.cents * _CENT, target.granted - target.consumed)
            await bill(engine, project, str(amount), lease_id=target.lease_id)
            target.consumed += amount
            spent += amount
        else:
            releasable = [x for x in leases if not x.released]
            if not releasable:
                continue
            target = releasable[op.which % len(releasable)]
            reported = min(target.consumed + op.extra_cents * _CENT, target.granted)
            await release(engine, target.lease_id, str(reported))
            target.granted = reported
            target.released = True
        (state,) = (await report(engine, project)).budgets
        assert state.spent == spent
        assert state.spent + state.held <= state.limit, state
        assert state.held == sum(
            (x.hold for x in leases if not x.released or x.hold > 0), Decimal(0)
        )
