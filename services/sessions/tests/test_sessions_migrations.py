"""Sessions' migrations apply (twice, idempotently) and produce exactly the models' schema."""

from __future__ import annotations

from gateway_common import db
from gateway_common.testing import schema_drift
from sessions.main import MIGRATIONS_DIR
from sessions.store.models import METADATA


def test_migrations_apply_and_match_the_models(db_url: str) -> None:
    for _ in range(2):
        db.migrate(url=db_url, migrations_dir=MIGRATIONS_DIR, service="sessions")
    assert schema_drift(db_url, METADATA) == []
