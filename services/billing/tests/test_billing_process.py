"""``python -m billing``: migrates, answers health over NATS, exits 0 on SIGTERM."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import nats
import pytest

from gateway_common.testing import health_reply, service_process, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_migrate_then_serve_then_stop(
    nats_url: str, catalog_path: Path, tmp_path: Path
) -> None:
    database = tmp_path / "billing.db"
    env = {
        "NATS_URL": nats_url,
        "GATEWAY_DATABASE_URL": f"sqlite:///{database}",
        "BILLING_CATALOG_PATH": str(catalog_path),
    }
    with service_process("billing", env, "migrate", log_path=tmp_path / "migrate.log") as proc:
        assert proc.wait(timeout=30) == 0, (tmp_path / "migrate.log").read_text()
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {
        "ledger_entries",
        "ledger_line_items",
        "spend_totals",
        "alembic_version_billing",
    } <= tables

    log = tmp_path / "billing.log"
    nc = await nats.connect(nats_url)
    try:
        with service_process("billing", env, log_path=log) as proc:
            reply = await wait_for(lambda: health_reply(nc, "billing"), timeout_s=30)
            assert reply == {"service": "billing", "status": "ok"}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        await nc.close()
