"""Billing test fixtures: a test catalog, SQLite and PostgreSQL ledgers, a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from billing.main import MIGRATIONS_DIR
from gateway_common import db
from gateway_common.testing import PostgresUnavailable, nats_server, throwaway_postgres

CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  chat-a:
    aliases: [chat-a-latest]
    deployments: [{provider: fake, model: a}]
    prices:
      input: "0.000000075"
      output: "0.0000003"
      cached_input: "0.0000000375"
      reasoning: "0.0000006"
  chat-b:
    deployments: [{provider: fake, model: b}]
    prices: {input: "0.0000011", output: "0.0000044"}
  embed:
    deployments: [{provider: fake, model: e}]
    prices: {input: "0.00000002"}
    capabilities: [embeddings]
"""


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated throwaway PostgreSQL database for this test session (dropped after)."""
    try:
        with throwaway_postgres("switchyard_billing_test") as url:
            db.migrate(url=url, migrations_dir=MIGRATIONS_DIR, service="billing")
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A freshly migrated SQLite ledger."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    db.migrate(url=url, migrations_dir=MIGRATIONS_DIR, service="billing")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    with nats_server(tmp_path / "nats") as url:
        yield url
