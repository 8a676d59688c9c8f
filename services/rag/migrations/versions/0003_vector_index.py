"""Rag: the chunks' vector index (sqlite-vec / pgvector), backfilled from ``chunks.vector``.

On PostgreSQL the ``vector`` extension is created when the server has it
(``make pg-deps`` installs it) and the role may; the tables themselves are
made per dimension by ``rag.store.vectors.reconcile``, which also fills them
from the float32 blobs already stored. Without the extension (or a SQLite
that cannot load sqlite-vec) nothing is created, the reason is logged, and
retrieval stays exhaustive in Python; a later start with the index
available backfills it then.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from rag.store import vectors

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        available = conn.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        ).first()
        if available is not None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
            except sa.exc.DBAPIError as exc:
                log.warning("rag: CREATE EXTENSION vector refused (%s)", exc.orig)
    reason = vectors.unavailable_reason(conn)
    if reason is not None:
        log.warning("rag: no vector index: %s", reason)
        return
    vectors.reconcile(conn)


def downgrade() -> None:
    conn = op.get_bind()
    if vectors.unavailable_reason(conn) is not None and conn.dialect.name == "sqlite":
        return  # a vec0 table cannot be dropped without the module; none was made without it
    for dim in vectors.index_dimensions(conn):
        op.execute(f"DROP TABLE IF EXISTS chunks_vec_{dim}")
