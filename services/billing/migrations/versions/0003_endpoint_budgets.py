"""Endpoint budgets: per-endpoint spend of the month, and the endpoint a budget lease admits.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

An endpoint's ``monthly_budget`` is a ``budgets`` row of scope ``endpoint``
(``scope_id`` = the endpoint's id; no schema change there). Its spend is
counted by endpoint id in ``endpoint_spend_totals`` (a slug can be renamed),
and a lease granted for an endpoint's calls names it, so what its live leases
hold counts against that endpoint's budget. Types are spelled out here, not
imported, so this revision never changes when the models do.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(38, 18).with_variant(sa.String(48), "sqlite")


def upgrade() -> None:
    op.create_table(
        "endpoint_spend_totals",
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("endpoint_id", sa.String(), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id", "endpoint_id", "period", name="pk_endpoint_spend_totals"
        ),
    )
    with op.batch_alter_table("budget_leases") as batch:
        batch.add_column(sa.Column("endpoint_id", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("budget_leases") as batch:
        batch.drop_column("endpoint_id")
    op.drop_table("endpoint_spend_totals")
