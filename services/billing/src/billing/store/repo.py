"""Billing repository: keyword-only async functions over an explicit session.

``record_usage`` is the only writer of the ledger. It relies on one
transaction per event and on ``ledger_entries.event_id`` being unique, so
a redelivered event is a harmless no-op and spend is counted exactly once.
Everything an entry changes moves in that one transaction: the line items,
the project's and the key's spend of the month, the credits balance, and the
``consumed`` of the budget lease the request was admitted under, so a live
lease never counts an amount that spend already counts (see store.budgets).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.events import UsageRecorded
from gateway_common.pricing import LineItem, exact_sum

from .models import BudgetLease, Credit, KeySpendTotal, LedgerEntry, LedgerLineItem, SpendTotal

__all__ = ["billing_period", "record_usage"]


def billing_period(moment: datetime) -> str:
    """The spend period ('YYYY-MM', UTC) a moment falls in; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m")


async def record_usage(
    *,
    session: AsyncSession,
    event: UsageRecorded,
    items: Sequence[LineItem],
    billed_at: datetime | None = None,
) -> bool:
    """Write the entry, its line items and the spend increment in ONE transaction, committed.

    Returns True once committed, False when ``event.event_id`` is already in
    the ledger (the transaction is rolled back; nothing changes). The
    session must have no transaction open. Database errors other than that
    duplicate propagate, with the transaction rolled back.

    Spend is added exactly on both backends: PostgreSQL with an atomic
    ``amount = amount + :x`` upsert; SQLite by read-modify-write in Python
    (amounts are text there), which is safe because the entry insert that
    precedes it already holds SQLite's single write lock. Credits and the
    lease are read ``FOR UPDATE`` (row locks on PostgreSQL) and written back.
    """
    amount = exact_sum(line.amount for line in items)
    try:
        async with session.begin():
            entry_id = await _insert_entry(session, event, amount, billed_at or datetime.now(UTC))
            if items:
                await session.exec(
                    insert(LedgerLineItem),
                    params=[
                        {
                            "entry_id": entry_id,
                            "sku": line.sku,
                            "quantity": line.quantity,
                            "unit_price": line.unit_price,
                            "amount": line.amount,
                            "description": line.description,
                        }
                        for line in items
                    ],
                )
            period = billing_period(event.occurred_at)
            await _add_spend(
                session, SpendTotal, amount, project_id=event.project_id, period=period
            )
            if event.api_key_id:
                await _add_spend(
                    session,
                    KeySpendTotal,
                    amount,
                    project_id=event.project_id,
                    api_key_id=event.api_key_id,
                    period=period,
                )
            await _debit_credits(session, event.project_id, amount)
            if event.budget_lease_id:
                await _consume_lease(session, event, amount)
    except IntegrityError:
        if await _entry_exists(session, event.event_id):
            return False
        raise
    return True


async def _insert_entry(
    session: AsyncSession, event: UsageRecorded, amount: Decimal, billed_at: datetime
) -> int:
    usage = event.usage
    result = await session.exec(
        insert(LedgerEntry)
        .values(
            event_id=event.event_id,
            request_id=event.request_id,
            project_id=event.project_id,
            api_key_id=event.api_key_id,
            operation=event.operation,
            model=event.model,
            provider=event.provider,
            deployment=event.deployment,
            endpoint=event.endpoint,
            byok=event.byok,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            total_amount=amount,
            occurred_at=event.occurred_at,
            billed_at=billed_at,
        )
        .returning(col(LedgerEntry.id))
    )
    return int(result.scalar_one())


async def _add_spend(
    session: AsyncSession,
    table: type[SpendTotal] | type[KeySpendTotal],
    amount: Decimal,
    **key: str,
) -> None:
    """Add ``amount`` to the spend row of ``table`` identified by ``key``, creating it if needed."""
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        upsert = pg_insert(table).values(**key, amount=amount)
        await session.exec(
            upsert.on_conflict_do_update(
                index_elements=[col(getattr(table, name)) for name in key],
                set_={"amount": col(table.amount) + upsert.excluded.amount},
            )
        )
        return
    this_row = [col(getattr(table, name)) == value for name, value in key.items()]
    current: Decimal | None = (
        await session.exec(select(col(table.amount)).where(*this_row))
    ).one_or_none()
    if current is None:
        await session.exec(insert(table).values(**key, amount=amount))
    else:
        await session.exec(
            update(table).where(*this_row).values(amount=exact_sum((current, amount)))
        )


async def _debit_credits(session: AsyncSession, project_id: str, amount: Decimal) -> None:
    """Take ``amount`` off the project's prepaid balance, if it has one (it may go negative)."""
    credit = (
        await session.exec(
            select(Credit).where(col(Credit.project_id) == project_id).with_for_update()
        )
    ).one_or_none()
    if credit is None:
        return
    await session.exec(
        update(Credit)
        .where(col(Credit.project_id) == project_id)
        .values(balance=exact_sum((credit.balance, -amount)), updated_at=datetime.now(UTC))
    )


async def _consume_lease(session: AsyncSession, event: UsageRecorded, amount: Decimal) -> None:
    """Count ``amount`` as consumed from the event's lease; a released lease fully billed closes.

    A lease of another project is left alone: a request cannot spend another
    project's budget, whatever id it carries.
    """
    lease = (
        await session.exec(
            select(BudgetLease)
            .where(
                col(BudgetLease.lease_id) == event.budget_lease_id,
                col(BudgetLease.project_id) == event.project_id,
            )
            .with_for_update()
        )
    ).one_or_none()
    if lease is None:
        return
    consumed = exact_sum((lease.consumed, amount))
    settled = (
        lease.released_at is not None and lease.closed_at is None and consumed >= lease.granted
    )
    await session.exec(
        update(BudgetLease)
        .where(col(BudgetLease.lease_id) == lease.lease_id)
        .values(consumed=consumed, closed_at=datetime.now(UTC) if settled else lease.closed_at)
    )


async def _entry_exists(session: AsyncSession, event_id: str) -> bool:
    found = await session.exec(
        select(col(LedgerEntry.id)).where(col(LedgerEntry.event_id) == event_id)
    )
    return found.first() is not None
