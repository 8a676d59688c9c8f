"""Seed 001's pipeline settings: endpoints get prompt template, schemas, guardrails, caps,
budget, rate limits, fallbacks and sessions; keys and projects get rate limits, keys a list
of allowed models.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _endpoint_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("prompt_template", sa.Text(), nullable=True),
        sa.Column("input_schema", sa.JSON(), nullable=True),
        sa.Column("output_schema", sa.JSON(), nullable=True),
        sa.Column("guardrails", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("max_request_tokens", sa.Integer(), nullable=True),
        sa.Column("monthly_budget", sa.Numeric(20, 6), nullable=True),
        sa.Column("rate_limits", sa.JSON(), nullable=True),
        sa.Column("fallbacks", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("sessions_enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("session_ttl_seconds", sa.Integer(), nullable=False, server_default="86400"),
    )


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        for column in _endpoint_columns():
            batch.add_column(column)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("rate_limits", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("rate_limits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("rate_limits")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("allowed_models")
        batch.drop_column("rate_limits")
    with op.batch_alter_table("endpoints") as batch:
        for column in reversed(_endpoint_columns()):
            batch.drop_column(column.name)
