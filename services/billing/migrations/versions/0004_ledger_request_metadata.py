"""The request's ``metadata`` on its ledger entry (``usage request`` shows it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

``ledger_entries.request_metadata``: the usage event's ``metadata`` (the client's
OpenAI-shaped string map), JSON, null when the request had none (and for every entry
billed before this revision). Types are spelled out here, not imported, so this
revision never changes when the models do.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("request_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_column("request_metadata")
