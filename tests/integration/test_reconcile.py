"""``python -m billing reconcile``: clean after real traffic, not clean once a ledger row is gone."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from devtools.stack import Stack
from gateway_common.db import sync_url
from tests.integration.helpers import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _reconcile(stack: Stack, start: datetime, end: datetime) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "",
        "NATS_URL": stack.nats_url,
        "GATEWAY_DATABASE_URL": stack.database_url("billing"),
    }
    argv = ["reconcile", "--from", start.isoformat(), "--to", end.isoformat()]
    return subprocess.run(
        [sys.executable, "-m", "billing", *argv],
        env=env,
        cwd=stack.config.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _entries(engine: sa.Engine, request_ids: list[str]) -> list[sa.Row] | None:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, event_id FROM ledger_entries WHERE request_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": request_ids},
        ).all()
    return list(rows) if len(rows) == len(request_ids) else None


def test_reconcile_reports_clean_then_the_deleted_entry(
    stack: Stack, base_url: str, api_key: str
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    request_ids = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}) as http:
        for index in range(5):
            body = {
                "model": "mock-chat",
                "messages": [{"role": "user", "content": f"reconcile {uuid.uuid4().hex} {index}"}],
            }
            resp = http.post("/v1/chat/completions", json=body, timeout=30)
            assert resp.status_code == 200, resp.text
            request_ids.append(resp.headers["x-request-id"])
    engine = sa.create_engine(sync_url(stack.database_url("billing")))
    try:
        entries = poll(lambda: _entries(engine, request_ids), timeout=60)
        end = datetime.now(UTC) + timedelta(seconds=1)

        clean = _reconcile(stack, start, end)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert clean.stdout.rstrip().endswith("clean")

        gone = entries[0]
        with engine.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM ledger_line_items WHERE entry_id = :e"), {"e": gone.id}
            )
            conn.execute(sa.text("DELETE FROM ledger_entries WHERE id = :e"), {"e": gone.id})
        dirty = _reconcile(stack, start, end)
    finally:
        engine.dispose()
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert f"unbilled event {gone.event_id}" in dirty.stdout
    assert dirty.stdout.rstrip().endswith("NOT CLEAN")
