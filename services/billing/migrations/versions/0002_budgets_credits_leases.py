"""Budgets, credits, budget leases, per-key spend; ledger endpoint column and time indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Types are spelled out here (money: NUMERIC(38, 18) on PostgreSQL, text on
SQLite), not imported, so this revision never changes when the models do.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("endpoint", sa.String(), nullable=False, server_default=""))
    op.create_index(
        "ix_ledger_entries_project_id_occurred_at", "ledger_entries", ["project_id", "occurred_at"]
    )
    op.create_index("ix_ledger_entries_occurred_at", "ledger_entries", ["occurred_at"])
    op.create_index("ix_ledger_entries_request_id", "ledger_entries", ["request_id"])
    op.create_table(
        "key_spend_totals",
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("api_key_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "api_key_id", "period", name="pk_key_spend_totals"),
    )
    op.create_table(
        "budgets",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("limit_amount", MONEY, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
        sa.UniqueConstraint(
            "project_id",
            "scope",
            "scope_id",
            "period",
            name="uq_budgets_project_id_scope_scope_id_period",
        ),
    )
    op.create_index("ix_budgets_project_id", "budgets", ["project_id"])
    op.create_table(
        "credits",
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("project_id", name="pk_credits"),
    )
    op.create_table(
        "credit_transactions",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("topup_id", sa.String(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_credit_transactions"),
        sa.UniqueConstraint(
            "project_id", "topup_id", name="uq_credit_transactions_project_id_topup_id"
        ),
    )
    op.create_table(
        "budget_leases",
        sa.Column("lease_id", sa.String(), nullable=False),
        sa.Column("edge_id", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("api_key_id", sa.String(), nullable=False),
        sa.Column("granted", MONEY, nullable=False),
        sa.Column("consumed", MONEY, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.Column("released_at", WHEN, nullable=True),
        sa.Column("closed_at", WHEN, nullable=True),
        sa.PrimaryKeyConstraint("lease_id", name="pk_budget_leases"),
    )
    op.create_index(
        "ix_budget_leases_project_id_closed_at", "budget_leases", ["project_id", "closed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_budget_leases_project_id_closed_at", table_name="budget_leases")
    op.drop_table("budget_leases")
    op.drop_table("credit_transactions")
    op.drop_table("credits")
    op.drop_index("ix_budgets_project_id", table_name="budgets")
    op.drop_table("budgets")
    op.drop_table("key_spend_totals")
    op.drop_index("ix_ledger_entries_request_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_occurred_at", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_project_id_occurred_at", table_name="ledger_entries")
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("endpoint")
