"""``db.is_at_head`` / ``db.wait_for_head``: what a pod without migrate-on-start waits for."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_common import db

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "sessions" / "migrations"


def test_a_fresh_database_is_not_at_head_until_migrated(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    assert not db.is_at_head(url=url, migrations_dir=MIGRATIONS, service="sessions")
    with pytest.raises(TimeoutError, match="migrate Job"):
        db.wait_for_head(
            url=url, migrations_dir=MIGRATIONS, service="sessions", timeout_s=0.2, poll_s=0.05
        )
    db.migrate(url=url, migrations_dir=MIGRATIONS, service="sessions")
    assert db.is_at_head(url=url, migrations_dir=MIGRATIONS, service="sessions")
    db.wait_for_head(url=url, migrations_dir=MIGRATIONS, service="sessions", timeout_s=1)
    # Another service's version table is not this one's.
    assert not db.is_at_head(url=url, migrations_dir=MIGRATIONS, service="rag")
