"""The hand-written Alembic history builds exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from edge.store import ConsoleLogout, Gateway, migrations_dir, models
from gateway_common import db

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
EDGE_TABLES = {
    models.Project.__tablename__,
    models.ApiKey.__tablename__,
    models.ProviderCredential.__tablename__,
    models.Endpoint.__tablename__,
    models.ChannelKey.__tablename__,
    Gateway.__tablename__,
    ConsoleLogout.__tablename__,
}


def _edge_metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in EDGE_TABLES:
            table.to_metadata(metadata)
    return metadata


def _check(url: str) -> None:
    db.migrate(url=url, migrations_dir=migrations_dir(), service="edge")
    db.migrate(url=url, migrations_dir=migrations_dir(), service="edge")  # idempotent
    engine = sa.create_engine(db.sync_url(url))
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert {*EDGE_TABLES, "alembic_version_edge"} <= tables
            assert (
                conn.execute(sa.text("SELECT version_num FROM alembic_version_edge")).scalar()
                == "0007"
            )
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, _edge_metadata()) if d[0] != "remove_table"]
            assert diff == []
    finally:
        engine.dispose()


def test_sqlite(tmp_path) -> None:
    _check(f"sqlite+aiosqlite:///{tmp_path / 'edge.db'}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database, dropped afterwards."""
    name = f"edge_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.postgres
def test_postgresql(pg_url: str) -> None:
    _check(pg_url)
