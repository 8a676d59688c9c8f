"""Managed provider credentials, sealed with AES-256-GCM.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_credentials",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "project_id",
            sa.String(36),
            sa.ForeignKey(
                "projects.id", ondelete="CASCADE", name="fk_provider_credentials_project_id"
            ),
            nullable=False,
        ),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("base_url", sa.String(2000), nullable=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.String(80), nullable=False),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "project_id", "provider", name="uq_provider_credentials_project_provider"
        ),
    )
    op.create_index("ix_provider_credentials_project_id", "provider_credentials", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_provider_credentials_project_id", table_name="provider_credentials")
    op.drop_table("provider_credentials")
