"""Billing repository: keyword-only async functions over an explicit session.

``record_usages`` is the only writer of the ledger. It writes a batch of
priced events in ONE transaction and relies on ``ledger_entries.event_id``
being unique, so a redelivered event is a harmless no-op and spend is
counted exactly once. Everything an entry changes moves in that one
transaction: the line items, the project's, the key's and the Gateway API
endpoint's (by ``endpoint_id``) spend of the month, the credits balance, and
the ``consumed`` of the budget lease the request was admitted under, so a
live lease never counts an amount that spend already counts (see
store.budgets).

A batch costs a fixed number of statements, whatever its size::

    INSERT ledger_entries ... ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id
    INSERT ledger_line_items                      (entries just inserted only)
    spend_totals, key_spend_totals,
    endpoint_spend_totals                         one row per (project[, key | endpoint], period)
    SELECT credits FOR UPDATE; UPDATE credits     one row per project with credits
    SELECT budget_leases FOR UPDATE; UPDATE ...   one row per lease

The entries the insert does not return were already in the ledger: nothing
else is written for them. Amounts are summed per row exactly
(``exact_sum``) before they are added, which gives the same totals as one
event after the other. This path is SQLAlchemy Core on the session's
connection (no ORM unit of work): billing's CPU per event is what bounds
its throughput.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Column, CursorResult, Table, bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.events import UsageRecorded
from gateway_common.pricing import LineItem, exact_sum

from .models import (
    BudgetLease,
    Credit,
    EndpointSpendTotal,
    KeySpendTotal,
    LedgerEntry,
    LedgerLineItem,
    SpendTotal,
)

__all__ = ["PricedUsage", "billing_period", "record_usage", "record_usages"]

_K = TypeVar("_K", bound=str | tuple[str, ...])

_ENTRIES: Table = LedgerEntry.__table__  # type: ignore[attr-defined]
_LINE_ITEMS: Table = LedgerLineItem.__table__  # type: ignore[attr-defined]
_SPEND: Table = SpendTotal.__table__  # type: ignore[attr-defined]
_KEY_SPEND: Table = KeySpendTotal.__table__  # type: ignore[attr-defined]
_ENDPOINT_SPEND: Table = EndpointSpendTotal.__table__  # type: ignore[attr-defined]
_CREDITS: Table = Credit.__table__  # type: ignore[attr-defined]
_LEASES: Table = BudgetLease.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """A usage event with the line items it is billed at; ``amount`` is their exact sum."""

    event: UsageRecorded
    items: Sequence[LineItem]

    @property
    def amount(self) -> Decimal:
        return exact_sum(line.amount for line in self.items)


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
    """Bill one event (``record_usages`` of one); False when it was already in the ledger."""
    billed = await record_usages(
        session=session, usages=[PricedUsage(event, items)], billed_at=billed_at
    )
    return event.event_id in billed


async def record_usages(
    *,
    session: AsyncSession,
    usages: Sequence[PricedUsage],
    billed_at: datetime | None = None,
) -> frozenset[str]:
    """Write a batch of events and all they change in ONE transaction, committed.

    Returns the event ids this call added to the ledger; every other event of
    the batch was already billed (by an earlier call, or earlier in this
    batch: the first occurrence of an id is the one written) and changed
    nothing. The session must have no transaction open. Any database error
    propagates with the whole transaction rolled back, so a batch is billed
    completely or not at all; an amount that does not fit the money columns
    is refused (``StatementError``), never rounded.

    Spend is added exactly on both backends: PostgreSQL with an atomic
    ``amount = amount + excluded.amount`` upsert; SQLite by read-modify-write
    in Python (amounts are text there), which is safe because the entry
    insert that precedes it already holds SQLite's single write lock.
    Credits and leases are read ``FOR UPDATE`` (row locks on PostgreSQL), in
    key order so that concurrent batches cannot deadlock, and written back.
    """
    unique: dict[str, PricedUsage] = {}
    for usage in usages:
        unique.setdefault(usage.event.event_id, usage)
    if not unique:
        return frozenset()
    billed_at = billed_at or datetime.now(UTC)
    amounts = {event_id: usage.amount for event_id, usage in unique.items()}
    async with session.begin():
        connection = await session.connection()
        entry_ids = await _insert_entries(connection, unique.values(), amounts, billed_at)
        new = [unique[event_id] for event_id in entry_ids]
        if new:
            await _insert_line_items(connection, new, entry_ids)
            spend: dict[tuple[str, ...], list[Decimal]] = defaultdict(list)
            key_spend: dict[tuple[str, ...], list[Decimal]] = defaultdict(list)
            endpoint_spend: dict[tuple[str, ...], list[Decimal]] = defaultdict(list)
            credits: dict[str, list[Decimal]] = defaultdict(list)
            leases: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
            for usage in new:
                event, amount = usage.event, amounts[usage.event.event_id]
                period = billing_period(event.occurred_at)
                spend[event.project_id, period].append(amount)
                if event.api_key_id:
                    key_spend[event.project_id, event.api_key_id, period].append(amount)
                if event.endpoint_id:
                    endpoint_spend[event.project_id, event.endpoint_id, period].append(amount)
                credits[event.project_id].append(amount)
                if event.budget_lease_id:
                    leases[event.budget_lease_id, event.project_id].append(amount)
            await _add_spend(connection, _SPEND, _summed(spend))
            await _add_spend(connection, _KEY_SPEND, _summed(key_spend))
            await _add_spend(connection, _ENDPOINT_SPEND, _summed(endpoint_spend))
            await _debit_credits(connection, _summed(credits))
            await _consume_leases(connection, _summed(leases))
    return frozenset(entry_ids)


def _summed(amounts: Mapping[_K, list[Decimal]]) -> dict[_K, Decimal]:
    """Each key's amounts summed exactly, in key order (the order rows are locked in)."""
    return {key: exact_sum(values) for key, values in sorted(amounts.items())}


async def _insert_entries(
    connection: AsyncConnection,
    usages: Iterable[PricedUsage],
    amounts: Mapping[str, Decimal],
    billed_at: datetime,
) -> dict[str, int]:
    """Insert the entries not yet in the ledger; ``{event_id: entry id}`` of those inserted."""
    rows = []
    for usage in usages:
        event, tokens = usage.event, usage.event.usage
        rows.append(
            {
                "event_id": event.event_id,
                "request_id": event.request_id,
                "project_id": event.project_id,
                "api_key_id": event.api_key_id,
                "operation": event.operation,
                "model": event.model,
                "provider": event.provider,
                "deployment": event.deployment,
                "endpoint": event.endpoint,
                "byok": event.byok,
                "request_metadata": event.metadata or None,
                "prompt_tokens": tokens.prompt_tokens,
                "completion_tokens": tokens.completion_tokens,
                "cached_tokens": tokens.cached_tokens,
                "reasoning_tokens": tokens.reasoning_tokens,
                "total_amount": amounts[event.event_id],
                "occurred_at": event.occurred_at,
                "billed_at": billed_at,
            }
        )
    result = await _bulk_insert(
        connection,
        _ENTRIES,
        rows,
        skip_conflicts_on=_ENTRIES.c.event_id,
        returning=(_ENTRIES.c.event_id, _ENTRIES.c.id),
    )
    return {row["event_id"]: int(row["id"]) for row in result.mappings()}


async def _insert_line_items(
    connection: AsyncConnection, usages: Sequence[PricedUsage], entry_ids: Mapping[str, int]
) -> None:
    rows = [
        {
            "entry_id": entry_ids[usage.event.event_id],
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "amount": line.amount,
            "description": line.description,
        }
        for usage in usages
        for line in usage.items
    ]
    if rows:
        await _bulk_insert(connection, _LINE_ITEMS, rows)


async def _bulk_insert(
    connection: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, object]],
    *,
    skip_conflicts_on: Column[str] | None = None,
    returning: Sequence[Column[Any]] = (),
) -> CursorResult[Any]:
    """Insert ``rows`` (same keys in each) with one statement; conflicting rows are skipped.

    On PostgreSQL the statement is ``INSERT ... SELECT FROM unnest(<one array
    per column>)``: psycopg parses and caches a short query, where a VALUES
    list as long as the batch would be parsed anew each time (a regex pass
    measured at a fifth of billing's CPU). SQLite gets an
    executemany, which SQLAlchemy turns into multi-row VALUES when
    ``returning`` asks for rows back.
    """
    names = list(rows[0])
    statement: postgresql.Insert | sqlite.Insert
    if connection.dialect.name == "postgresql":
        arrays = [bindparam(name, type_=postgresql.ARRAY(table.c[name].type)) for name in names]
        source = func.unnest(*arrays).table_valued(*names).render_derived()
        statement = postgresql.insert(table).from_select(names, select(*source.c))
        params: Any = {name: [row[name] for row in rows] for name in names}
    else:
        statement = sqlite.insert(table)
        params = rows
    if skip_conflicts_on is not None:
        statement = statement.on_conflict_do_nothing(index_elements=[skip_conflicts_on])
    executable = statement.returning(*returning) if returning else statement
    return await connection.execute(executable, params)


async def _add_spend(
    connection: AsyncConnection, table: Table, amounts: Mapping[tuple[str, ...], Decimal]
) -> None:
    """Add each amount to the row of ``table`` its key names, creating missing rows.

    ``table``'s primary key columns, in order, are the key; keys arrive sorted.
    """
    if not amounts:
        return
    key_columns = list(table.primary_key.columns)
    names = [column.name for column in key_columns]
    if connection.dialect.name == "postgresql":
        upsert = postgresql.insert(table)
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=key_columns,
                set_={"amount": table.c.amount + upsert.excluded.amount},
            ),
            [{**dict(zip(names, key, strict=True)), "amount": add} for key, add in amounts.items()],
        )
        return
    found = await connection.execute(
        select(*key_columns, table.c.amount).where(tuple_(*key_columns).in_(list(amounts)))
    )
    current = {tuple(row[:-1]): row[-1] for row in found}
    created = [
        {**dict(zip(names, key, strict=True)), "amount": add}
        for key, add in amounts.items()
        if key not in current
    ]
    changed = [
        {**{f"key_{name}": part for name, part in zip(names, key, strict=True)}, "new": total}
        for key, add in amounts.items()
        if key in current
        for total in [exact_sum((current[key], add))]
    ]
    if created:
        await connection.execute(insert(table), created)
    if changed:
        this_row = [column == bindparam(f"key_{column.name}") for column in key_columns]
        await connection.execute(
            update(table).where(*this_row).values(amount=bindparam("new")), changed
        )


async def _debit_credits(connection: AsyncConnection, amounts: Mapping[str, Decimal]) -> None:
    """Take each amount off its project's prepaid balance, if it has one (it may go negative)."""
    found = await connection.execute(
        select(_CREDITS.c.project_id, _CREDITS.c.balance)
        .where(_CREDITS.c.project_id.in_(list(amounts)))
        .order_by(_CREDITS.c.project_id)
        .with_for_update()
    )
    now = datetime.now(UTC)
    changed = [
        {"key": project_id, "new_balance": exact_sum((balance, -amounts[project_id])), "now": now}
        for project_id, balance in found
    ]
    if changed:
        await connection.execute(
            update(_CREDITS)
            .where(_CREDITS.c.project_id == bindparam("key"))
            .values(balance=bindparam("new_balance"), updated_at=bindparam("now")),
            changed,
        )


async def _consume_leases(
    connection: AsyncConnection, amounts: Mapping[tuple[str, str], Decimal]
) -> None:
    """Count amounts as consumed from their leases; a released lease fully billed closes.

    ``amounts`` is keyed by (lease id, project id): a lease of another project
    is left alone, since a request cannot spend another project's budget,
    whatever id it carries.
    """
    if not amounts:
        return
    found = await connection.execute(
        select(
            _LEASES.c.lease_id,
            _LEASES.c.project_id,
            _LEASES.c.granted,
            _LEASES.c.consumed,
            _LEASES.c.released_at,
            _LEASES.c.closed_at,
        )
        .where(_LEASES.c.lease_id.in_(sorted({lease_id for lease_id, _ in amounts})))
        .order_by(_LEASES.c.lease_id)
        .with_for_update()
    )
    now = datetime.now(UTC)
    changed = []
    for lease_id, project_id, granted, consumed, released_at, closed_at in found:
        add = amounts.get((lease_id, project_id))
        if add is None:
            continue
        total = exact_sum((consumed, add))
        settled = released_at is not None and closed_at is None and total >= granted
        changed.append(
            {"key": lease_id, "new_consumed": total, "new_closed": now if settled else closed_at}
        )
    if changed:
        await connection.execute(
            update(_LEASES)
            .where(_LEASES.c.lease_id == bindparam("key"))
            .values(consumed=bindparam("new_consumed"), closed_at=bindparam("new_closed")),
            changed,
        )
