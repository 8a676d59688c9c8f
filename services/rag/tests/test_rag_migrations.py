"""Rag's migrations apply (twice, idempotently) and produce exactly the models' schema."""

from __future__ import annotations

from typing import Any

from gateway_common import db
from gateway_common.testing import schema_drift
from rag.main import MIGRATIONS_DIR
from rag.store.models import METADATA


def _outside_models(diff: Any) -> bool:
    """The full-text objects migration 0002 adds by hand: SQLite's FTS5 table and its
    shadow tables (``chunks_fts*``), PostgreSQL's expression index; and the vector index
    tables of ``rag.store.vectors`` (``chunks_vec_<dim>*``); not SQLModel models."""
    if isinstance(diff, tuple) and diff[0] == "remove_table":
        return str(diff[1].name).startswith(("chunks_fts", "chunks_vec_"))
    if isinstance(diff, tuple) and diff[0] == "remove_index":
        return str(diff[1].name) == "ix_chunks_text_tsv" or str(diff[1].table.name).startswith(
            "chunks_vec_"
        )
    return False


def test_migrations_apply_and_match_the_models(db_url: str) -> None:
    for _ in range(2):
        db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="rag")
    assert [diff for diff in schema_drift(db_url, METADATA) if not _outside_models(diff)] == []
