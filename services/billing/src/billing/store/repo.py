"""Billing repository: keyword-only async functions over an explicit session.

``record_usage`` is the only writer of the ledger. It relies on one
transaction per event and on ``ledger_entries.event_id`` being unique, so
a redelivered event is a harmless no-op and spend is counted exactly once.
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

from ..pricing import LineItem, exact_sum
from .models import LedgerEntry, LedgerLineItem, SpendTotal

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
    precedes it already holds SQLite's single write lock.
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
            await _add_spend(session, event.project_id, billing_period(event.occurred_at), amount)
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


async def _add_spend(session: AsyncSession, project_id: str, period: str, amount: Decimal) -> None:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        upsert = pg_insert(SpendTotal).values(project_id=project_id, period=period, amount=amount)
        await session.exec(
            upsert.on_conflict_do_update(
                index_elements=[col(SpendTotal.project_id), col(SpendTotal.period)],
                set_={"amount": col(SpendTotal.amount) + upsert.excluded.amount},
            )
        )
        return
    this_period = (col(SpendTotal.project_id) == project_id, col(SpendTotal.period) == period)
    current: Decimal | None = (
        await session.exec(select(col(SpendTotal.amount)).where(*this_period))
    ).one_or_none()
    if current is None:
        await session.exec(
            insert(SpendTotal).values(project_id=project_id, period=period, amount=amount)
        )
    else:
        await session.exec(
            update(SpendTotal).where(*this_period).values(amount=exact_sum((current, amount)))
        )


async def _entry_exists(session: AsyncSession, event_id: str) -> bool:
    found = await session.exec(
        select(col(LedgerEntry.id)).where(col(LedgerEntry.event_id) == event_id)
    )
    return found.first() is not None
