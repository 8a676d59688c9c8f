"""Bodies of the admin billing routes (``billing.py``): money is a decimal *string* both ways.

Amounts in are refused unless written as JSON strings (``"10.00"``): a JSON
number would pass through a binary float on many clients before it got here.
Amounts out are plain decimal strings (``gateway_common.billing_api.Money``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from gateway_common.billing_api import (
    BudgetState,
    CreditState,
    LedgerEntryView,
    Money,
    UsageGroup,
    UsageRow,
)

__all__ = [
    "BudgetPut",
    "BudgetView",
    "CreditsView",
    "DayOrInstant",
    "RequestCost",
    "SpendView",
    "TopUp",
    "TopUpResult",
    "UsageView",
    "range_end",
    "range_start",
]

_PERIOD = r"^(monthly|\d{4}-(0[1-9]|1[0-2]))$"


def _decimal_text(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError('money must be a decimal string, e.g. "10.00"')
    return value


MoneyIn = Annotated[Money, BeforeValidator(_decimal_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BudgetPut(_Body):
    """``PUT .../budget``: a monthly limit; ``null`` removes the budget."""

    limit: MoneyIn | None = Field(ge=0, description='Decimal string, e.g. "25.00"; null: none.')
    period: str = Field(
        default="monthly",
        pattern=_PERIOD,
        description="'monthly' (every month) or one month 'YYYY-MM'.",
    )


class BudgetView(BaseModel):
    """A project's or key's budget in the current month (``budget`` null: none set)."""

    project_id: str
    api_key_id: str | None = None
    period: str = Field(description="The month reported, 'YYYY-MM' (UTC).")
    spent: Money = Field(description="Spend of the project (or key) in that month.")
    budget: BudgetState | None


class TopUp(_Body):
    """``POST .../credits/topups``: retrying with the same ``topup_id`` adds nothing more."""

    topup_id: str = Field(min_length=1, max_length=200, description="Client-chosen unique id.")
    amount: MoneyIn = Field(gt=0, description='Decimal string, e.g. "50.00".')
    note: str = Field(default="", max_length=1000)


class TopUpResult(BaseModel):
    """The balance after a top-up; ``applied`` false: that ``topup_id`` was applied before."""

    project_id: str
    balance: Money
    applied: bool


class CreditsView(BaseModel):
    """A project's prepaid credits (``credits`` null: never topped up)."""

    project_id: str
    credits: CreditState | None


class SpendView(BaseModel):
    """Spend, budgets and credits of a project (and a key, and an endpoint) in one month."""

    project_id: str
    period: str
    project_spend: Money
    key_spend: Money | None
    endpoint_spend: Money | None = Field(
        default=None, description="The endpoint's spend, when one was asked for."
    )
    budgets: list[BudgetState]
    credits: CreditState | None


class UsageView(BaseModel):
    """Usage in ``[from, to)`` grouped by ``group_by``, rows ordered by group."""

    model_config = ConfigDict(populate_by_name=True)

    project_id: str
    group_by: UsageGroup
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    rows: list[UsageRow]
    total: Money


class RequestCost(BaseModel):
    """What one request cost: its ledger entries (several after a billed failover)."""

    request_id: str
    total_amount: Money
    entries: list[LedgerEntryView]


def _day_or_instant(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("use a day (YYYY-MM-DD) or an ISO 8601 instant") from None


#: A report bound: ``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 instant (naive means UTC).
DayOrInstant = Annotated[date | datetime, BeforeValidator(_day_or_instant)]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def range_start(value: date | datetime | None, now: datetime) -> datetime:
    """Start of a report range: a day means its midnight (UTC); default: this month's first."""
    if value is None:
        return datetime(now.year, now.month, 1, tzinfo=UTC)
    if isinstance(value, datetime):
        return _aware(value)
    return datetime.combine(value, time(), tzinfo=UTC)


def range_end(value: date | datetime | None, now: datetime) -> datetime:
    """End (exclusive) of a report range: a day is included whole; default: end of today."""
    if value is None:
        value = now.date()
    if isinstance(value, datetime):
        return _aware(value)
    return datetime.combine(value + timedelta(days=1), time(), tzinfo=UTC)
