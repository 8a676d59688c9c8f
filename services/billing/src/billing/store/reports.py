"""Read side of the ledger: usage reports, one request's cost, entries by time.

Sums of money are exact on both backends: PostgreSQL adds NUMERIC in SQL;
on SQLite amounts are text, so its rows are summed in Python (SQLite is the
single-node embedded default, where reports are small).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common.billing_api import (
    LedgerEntryView,
    LineItemView,
    RequestQuery,
    RequestReport,
    UsageQuery,
    UsageReport,
    UsageRow,
)
from gateway_common.pricing import exact_sum

from .models import LedgerEntry, LedgerLineItem

__all__ = ["entry_ids_between", "request_report", "usage_report"]

_GROUP_COLUMNS = {
    "key": LedgerEntry.api_key_id,
    "model": LedgerEntry.model,
    "endpoint": LedgerEntry.endpoint,
}
_TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


async def usage_report(*, session: AsyncSession, query: UsageQuery) -> UsageReport:
    """Totals of the project's entries with ``start <= occurred_at < end``, by group."""
    in_range = (
        col(LedgerEntry.project_id) == query.project_id,
        col(LedgerEntry.occurred_at) >= _utc(query.start),
        col(LedgerEntry.occurred_at) < _utc(query.end),
    )
    connection = await session.connection()
    postgres = connection.dialect.name == "postgresql"
    if query.group_by == "day":
        group: Any = (
            func.to_char(func.timezone("UTC", col(LedgerEntry.occurred_at)), "YYYY-MM-DD")
            if postgres
            else func.substr(col(LedgerEntry.occurred_at), 1, 10)
        )
    else:
        group = col(_GROUP_COLUMNS[query.group_by])
    tokens = [col(getattr(LedgerEntry, name)) for name in _TOKENS]
    if postgres:
        # sqlalchemy's select: sqlmodel's typed overloads stop at four columns.
        result = await connection.execute(
            sa.select(
                group,
                func.count(func.distinct(col(LedgerEntry.request_id))),
                *(func.sum(column) for column in tokens),
                func.sum(col(LedgerEntry.total_amount)),
            )
            .where(*in_range)
            .group_by(group)
            .order_by(group)
        )
        rows = [
            UsageRow(
                group=name,
                requests=requests,
                **dict(zip(_TOKENS, sums[:4], strict=True)),
                amount=Decimal(sums[4]),
            )
            for name, requests, *sums in result.all()
        ]
    else:
        groups: defaultdict[str, _Group] = defaultdict(_Group)
        streamed = await session.stream(
            sa.select(group, col(LedgerEntry.request_id), *tokens, col(LedgerEntry.total_amount))
            .where(*in_range)
            .execution_options(yield_per=1000)
        )
        async for name, request_id, *counts, amount in streamed:
            groups[name].add(request_id, counts, amount)
        rows = [groups[name].row(name) for name in sorted(groups)]
    return UsageReport(rows=rows, total=exact_sum(row.amount for row in rows))


@dataclass
class _Group:
    """Running totals of one group (the SQLite path)."""

    requests: set[str] = field(default_factory=set)
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    amounts: list[Decimal] = field(default_factory=list)

    def add(self, request_id: str, counts: list[int], amount: Decimal) -> None:
        self.requests.add(request_id)
        self.tokens = [a + b for a, b in zip(self.tokens, counts, strict=True)]
        self.amounts.append(amount)

    def row(self, name: str) -> UsageRow:
        return UsageRow(
            group=name,
            requests=len(self.requests),
            **dict(zip(_TOKENS, self.tokens, strict=True)),
            amount=exact_sum(self.amounts),
        )


async def request_report(*, session: AsyncSession, query: RequestQuery) -> RequestReport:
    """The request's entries with their line items; ``not_found`` for none or another project's."""
    entries = (
        await session.exec(
            select(LedgerEntry)
            .where(
                col(LedgerEntry.request_id) == query.request_id,
                col(LedgerEntry.project_id) == query.project_id,
            )
            .order_by(col(LedgerEntry.occurred_at), col(LedgerEntry.id))
        )
    ).all()
    if not entries:
        return RequestReport(status="not_found", message="no such request in this project")
    items = (
        await session.exec(
            select(LedgerLineItem)
            .where(col(LedgerLineItem.entry_id).in_([entry.id for entry in entries]))
            .order_by(col(LedgerLineItem.id))
        )
    ).all()
    by_entry: defaultdict[int, list[LineItemView]] = defaultdict(list)
    for item in items:
        by_entry[item.entry_id].append(
            LineItemView(
                sku=item.sku,
                quantity=item.quantity,
                unit_price=item.unit_price,
                amount=item.amount,
                description=item.description,
            )
        )
    return RequestReport(
        entries=[
            LedgerEntryView(
                **entry.model_dump(
                    exclude={"id", "project_id", "occurred_at", "billed_at", "request_metadata"}
                ),
                metadata=entry.request_metadata,
                occurred_at=_utc(entry.occurred_at),
                billed_at=_utc(entry.billed_at),
                line_items=by_entry[entry.id or 0],
            )
            for entry in entries
        ]
    )


async def entry_ids_between(
    *, session: AsyncSession, start: datetime, end: datetime
) -> dict[str, int]:
    """``{event_id: count}`` of the entries with ``start <= occurred_at < end`` (all projects).

    Counts are 1 by the unique key; reconciliation checks it anyway.
    """
    result = await session.exec(
        select(col(LedgerEntry.event_id), func.count())
        .where(
            col(LedgerEntry.occurred_at) >= _utc(start), col(LedgerEntry.occurred_at) < _utc(end)
        )
        .group_by(col(LedgerEntry.event_id))
    )
    return {event_id: count for event_id, count in result.all()}


def _utc(moment: datetime) -> datetime:
    """In UTC: SQLite stores wall-clock text, so every bound must share one zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
