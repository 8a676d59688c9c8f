"""``python -m rag``: answers health over NATS and exits 0 on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import nats
import pytest

from gateway_common.testing import health_reply, service_process, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_serves_health_then_stops_cleanly(nats_url: str, tmp_path: Path) -> None:
    env = {"NATS_URL": nats_url, "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'rag.db'}"}
    log = tmp_path / "rag.log"
    nc = await nats.connect(nats_url)
    try:
        with service_process("rag", env, log_path=log) as proc:
            reply = await wait_for(lambda: health_reply(nc, "rag"), timeout_s=30)
            assert reply == {"service": "rag", "status": "ok"}, log.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        await nc.close()
