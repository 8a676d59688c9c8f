"""stored_responses: the Response object as returned, and an index for the expiry purge.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("stored_responses") as batch:
        # Rows written before this revision get an empty object (nothing wrote them yet).
        batch.add_column(
            sa.Column("response", JSON, nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_index("ix_stored_responses_expires_at", "stored_responses", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_stored_responses_expires_at", table_name="stored_responses")
    with op.batch_alter_table("stored_responses") as batch:
        batch.drop_column("response")
