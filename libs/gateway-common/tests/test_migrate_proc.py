"""``migrate_proc``: Alembic in a child process, with its outcome surfaced in the parent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gateway_common import db, migrate_proc

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "sessions" / "migrations"


async def test_the_child_migrates_and_the_parent_never_imports_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    had_alembic = "alembic" in sys.modules
    with pytest.raises(TimeoutError, match="migrate Job"):
        await migrate_proc.wait_for_head(
            url=url, migrations_dir=MIGRATIONS, service="sessions", timeout_s=0.3
        )
    await migrate_proc.migrate(url=url, migrations_dir=MIGRATIONS, service="sessions")
    await migrate_proc.migrate(url=url, migrations_dir=MIGRATIONS, service="sessions")  # idempotent
    await migrate_proc.wait_for_head(
        url=url, migrations_dir=MIGRATIONS, service="sessions", timeout_s=5
    )
    assert ("alembic" in sys.modules) == had_alembic
    assert db.is_at_head(url=url, migrations_dir=MIGRATIONS, service="sessions")


async def test_a_failing_migration_raises_with_the_childs_traceback(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(migrate_proc.MigrationFailed, match=r"(?s)migrate exited with 1.*Error"):
        await migrate_proc.migrate(url=url, migrations_dir=tmp_path / "absent", service="sessions")
