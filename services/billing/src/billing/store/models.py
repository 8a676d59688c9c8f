"""Billing's tables (SQLModel), on their own ``MetaData`` so Alembic sees only these.

    ledger_entries      one row per usage event (``event_id`` unique: the idempotency key)
    ledger_line_items   the priced SKUs of an entry
    spend_totals        running spend per (project, 'YYYY-MM' period)
    key_spend_totals    running spend per (project, API key, 'YYYY-MM' period)
    endpoint_spend_totals running spend per (project, Gateway API endpoint id, 'YYYY-MM' period)
    budgets             monthly limits of a project, a key or an endpoint ('monthly' or 'YYYY-MM')
    credits             prepaid balance of a project (debited by each billed entry)
    credit_transactions top-ups, unique per (project, client topup id)
    budget_leases       budget granted to edges for local admission (see store.budgets)

Money columns use ``ExactDecimal``: exact on PostgreSQL and on SQLite. The
read-side models are the wire views in ``gateway_common.billing_api``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

__all__ = [
    "METADATA",
    "BillingModel",
    "Budget",
    "BudgetLease",
    "Credit",
    "CreditTransaction",
    "ExactDecimal",
    "KeySpendTotal",
    "LedgerEntry",
    "LedgerLineItem",
    "SpendTotal",
    "canonical_decimal",
]

#: Deterministic constraint names, so migrations and models agree on them.
METADATA = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Row ids: 64-bit on PostgreSQL; SQLite needs INTEGER to alias its rowid.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")

_INTEGER_DIGITS = 20
_FRACTION_DIGITS = 18


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal stored without loss: ``NUMERIC(38, 18)`` on PostgreSQL, text on SQLite.

    SQLite has no decimal type (``Numeric`` there round-trips through a
    double), so the value is stored as its plain fixed-point string (no
    exponent, trailing fractional zeros stripped) and parsed back with
    ``Decimal``. Arithmetic on these columns therefore happens in Python on
    SQLite, never in SQL. On both backends a value that does not fit
    NUMERIC(38, 18) (more than 20 integer or 18 fractional digits, or not
    finite) is refused with ``ValueError`` instead of being rounded.
    """

    impl = Numeric(_INTEGER_DIGITS + _FRACTION_DIGITS, _FRACTION_DIGITS)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(
            Numeric(_INTEGER_DIGITS + _FRACTION_DIGITS, _FRACTION_DIGITS, asdecimal=True)
        )

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        text = canonical_decimal(value)
        return text if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


def canonical_decimal(value: Decimal) -> str:
    """``value`` as a plain fixed-point string; ``ValueError`` if it does not fit NUMERIC(38, 18)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"not a finite Decimal: {value!r}")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    whole, _, fraction = text.lstrip("-").partition(".")
    if len(fraction) > _FRACTION_DIGITS or len(whole.lstrip("0")) > _INTEGER_DIGITS:
        raise ValueError(f"{value} does not fit NUMERIC(38, 18) exactly")
    return "0" if text == "-0" else text


class BillingModel(SQLModel, registry=registry(metadata=METADATA)):
    """Base of billing's table models: binds them to ``METADATA``."""


class LedgerEntry(BillingModel, table=True):
    """One billed usage event. ``event_id`` is unique: a redelivered event is not billed twice."""

    __tablename__ = "ledger_entries"

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    event_id: str = Field(unique=True)
    request_id: str
    project_id: str
    api_key_id: str
    operation: str
    model: str
    provider: str
    deployment: str
    byok: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    total_amount: Decimal = Field(sa_type=ExactDecimal)
    occurred_at: datetime = Field(sa_type=DateTime(timezone=True))
    billed_at: datetime = Field(sa_type=DateTime(timezone=True))
    endpoint: str = Field(default="")
    #: The request's ``metadata`` (string map) from its usage event; null when it had none.
    request_metadata: dict[str, str] | None = Field(default=None, sa_type=JSON)

    # Usage reports and reconciliation select a project's (or everyone's) entries by time.
    __table_args__ = (
        Index("ix_ledger_entries_project_id_occurred_at", "project_id", "occurred_at"),
        Index("ix_ledger_entries_occurred_at", "occurred_at"),
        Index("ix_ledger_entries_request_id", "request_id"),
    )


class LedgerLineItem(BillingModel, table=True):
    """One priced SKU of an entry: ``amount == quantity * unit_price`` exactly."""

    __tablename__ = "ledger_line_items"

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    entry_id: int = Field(foreign_key="ledger_entries.id", index=True, sa_type=ID_TYPE)
    sku: str
    quantity: int
    unit_price: Decimal = Field(sa_type=ExactDecimal)
    amount: Decimal = Field(sa_type=ExactDecimal)
    description: str


class SpendTotal(BillingModel, table=True):
    """Running spend of a project in a calendar month (UTC), ``period`` = 'YYYY-MM'."""

    __tablename__ = "spend_totals"

    project_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True, max_length=7)
    amount: Decimal = Field(sa_type=ExactDecimal)


class KeySpendTotal(BillingModel, table=True):
    """Running spend of one API key of a project in a calendar month (UTC)."""

    __tablename__ = "key_spend_totals"

    project_id: str = Field(primary_key=True)
    api_key_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True, max_length=7)
    amount: Decimal = Field(sa_type=ExactDecimal)


class EndpointSpendTotal(BillingModel, table=True):
    """Running spend of one Gateway API endpoint (by id) of a project in a calendar month (UTC)."""

    __tablename__ = "endpoint_spend_totals"

    project_id: str = Field(primary_key=True)
    endpoint_id: str = Field(primary_key=True)
    period: str = Field(primary_key=True, max_length=7)
    amount: Decimal = Field(sa_type=ExactDecimal)


class Budget(BillingModel, table=True):
    """A spending limit: ``scope`` project (``scope_id`` = project id), key (= key id) or
    endpoint (= the Gateway API endpoint's id, its ``monthly_budget``).

    ``period`` 'monthly' applies to every month; a 'YYYY-MM' row replaces it for that month.
    """

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("project_id", "scope", "scope_id", "period"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    project_id: str = Field(index=True)
    scope: str = Field(max_length=16)
    scope_id: str
    period: str = Field(max_length=7)
    limit_amount: Decimal = Field(sa_type=ExactDecimal)
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class Credit(BillingModel, table=True):
    """Prepaid credits of a project; only projects with a row are credit-limited."""

    __tablename__ = "credits"

    project_id: str = Field(primary_key=True)
    balance: Decimal = Field(sa_type=ExactDecimal)
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class CreditTransaction(BillingModel, table=True):
    """One top-up; ``topup_id`` (client-chosen) makes a retried top-up harmless."""

    __tablename__ = "credit_transactions"
    __table_args__ = (UniqueConstraint("project_id", "topup_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=ID_TYPE)
    project_id: str
    topup_id: str
    amount: Decimal = Field(sa_type=ExactDecimal)
    note: str = Field(default="")
    created_at: datetime = Field(sa_type=DateTime(timezone=True))


class BudgetLease(BillingModel, table=True):
    """Budget granted to an edge; see ``billing.store.budgets`` for how it is counted."""

    __tablename__ = "budget_leases"
    __table_args__ = (Index("ix_budget_leases_project_id_closed_at", "project_id", "closed_at"),)

    lease_id: str = Field(primary_key=True)
    edge_id: str
    project_id: str
    api_key_id: str
    endpoint_id: str = Field(default="")
    granted: Decimal = Field(sa_type=ExactDecimal)
    consumed: Decimal = Field(sa_type=ExactDecimal)
    created_at: datetime = Field(sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    released_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    closed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
