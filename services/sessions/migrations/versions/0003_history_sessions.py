"""Session history: table sessions, and session_turns reshaped to hang off it.

session_turns was created by 0001 for transcript events and never written
(nothing appended to it before this revision), so it is dropped and created
again in its new shape rather than altered: turns now belong to a ``sessions``
row (foreign key, deleted with it), are unique on (session_id, seq), and carry
the appending request's id instead of an event id; project and expiry live on
the session.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_index("ix_session_turns_project_id_session_id_seq", table_name="session_turns")
    op.drop_table("session_turns")
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("next_seq", sa.BigInteger(), nullable=False),
        sa.Column("reaped", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_active_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_reaped_expires_at", "sessions", ["reaped", "expires_at"])
    op.create_table(
        "session_turns",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_turns"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_session_turns_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", "seq", name="uq_session_turns_session_id_seq"),
    )
    op.create_index(
        "ix_session_turns_session_id_request_id", "session_turns", ["session_id", "request_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_session_turns_session_id_request_id", table_name="session_turns")
    op.drop_table("session_turns")
    op.drop_index("ix_sessions_reaped_expires_at", table_name="sessions")
    op.drop_table("sessions")
    op.create_table(
        "session_turns",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("project_id", sa.String(), nullable=False),
        sa.Column("session_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("content", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_turns"),
        sa.UniqueConstraint("event_id", name="uq_session_turns_event_id"),
    )
    op.create_index(
        "ix_session_turns_project_id_session_id_seq",
        "session_turns",
        ["project_id", "session_id", "seq"],
    )
