"""Database plumbing: async engine creation and Alembic migrations per service.

Each service owns its tables and its own Alembic history (with its own
version table, ``alembic_version_<service>``), so several services may share
one PostgreSQL database, or each use a SQLite file, without touching each
other's tables. Engines are created in ``main`` (never at import) and
disposed by the service's exit stack.

Alembic (and Mako under it) is imported inside the functions that need it: a
process that only opens an engine (the edge, which never migrates in-process)
does not keep its ~14 MiB of modules resident.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import MetaData, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = [
    "create_engine",
    "is_at_head",
    "make_sessionmaker",
    "migrate",
    "ping",
    "sync_url",
    "wait_for_head",
]


#: Prepared statements sqlite3 keeps per connection (its default is 128; see ``create_engine``).
_SQLITE_CACHED_STATEMENTS = 16


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so several processes can write."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A small statement cache: a multi-row INSERT ... VALUES (billing's batches) is a new
        # statement text for every batch size, and sqlite3 keeps up to 128 prepared statements
        # per connection, some of them hundreds of KiB; filled by batches of every size that
        # grew billing's memory by tens of MiB over a million requests. Few statements repeat.
        engine = create_async_engine(
            url, connect_args={"timeout": 30, "cached_statements": _SQLITE_CACHED_STATEMENTS}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Session factory used by a service's repository functions."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers a trivial query."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:  # any driver error means "not ready"; readiness only reports it
        return False
    return True


def sync_url(url: str) -> str:
    """The synchronous-driver twin of an async URL (Alembic runs synchronously)."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def migrate(*, url: str, migrations_dir: Path, service: str) -> None:
    """Upgrade ``service``'s tables to head (idempotent; run by ``make run`` and at start-up)."""
    from alembic import command
    from alembic.config import Config

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    command.upgrade(cfg, "head")


def is_at_head(*, url: str, migrations_dir: Path, service: str) -> bool:
    """True when ``service``'s version table names every head of its migrations.

    False for a database that cannot be reached, has no version table yet, or is
    behind; it never changes the schema (the migrate Job does that).
    """
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    engine = create_sync_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": f"alembic_version_{service}"}
            )
            return set(context.get_current_heads()) == heads
    except sa_exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def wait_for_head(
    *, url: str, migrations_dir: Path, service: str, timeout_s: float, poll_s: float = 1.0
) -> None:
    """Block until ``is_at_head`` (the migrate Job finished), or raise ``TimeoutError``.

    Used instead of ``migrate`` when ``GATEWAY_MIGRATE_ON_START`` is false, so a new
    pod never reads or writes a schema older than its code.
    """
    deadline = time.monotonic() + timeout_s
    while not is_at_head(url=url, migrations_dir=migrations_dir, service=service):
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{service}: schema not at head after {timeout_s:g} s; has the migrate Job run?"
            )
        time.sleep(poll_s)


def run_alembic_env(target_metadata: MetaData) -> None:
    """Body of every service's ``migrations/env.py`` (online mode, sync driver).

    Uses the URL and version table that ``migrate`` put on the Alembic config.
    """
    from alembic import context

    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    engine = create_sync_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas may start together (init containers): serialize their upgrades.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": version_table}
                )
            context.run_migrations()
    engine.dispose()
