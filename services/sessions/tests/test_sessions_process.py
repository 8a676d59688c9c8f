"""``python -m sessions``: answers health over NATS, declares its consumer, exits 0 on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy

from gateway_common import subjects
from gateway_common.testing import health_reply, service_process, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_serves_health_and_declares_the_transcript_consumer(
    nats_url: str, tmp_path: Path
) -> None:
    env = {"NATS_URL": nats_url, "GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'sessions.db'}"}
    log = tmp_path / "sessions.log"
    nc = await nats.connect(nats_url)
    try:
        with service_process("sessions", env, log_path=log) as proc:
            reply = await wait_for(lambda: health_reply(nc, "sessions"), timeout_s=30)
            assert reply == {"service": "sessions", "status": "ok"}, log.read_text()
            info = await nc.jetstream().consumer_info(
                subjects.TRANSCRIPTS_STREAM, subjects.SESSIONS_DURABLE
            )
            assert info.config.filter_subject == subjects.SESSION_TURN_APPENDED
            assert info.config.ack_policy == AckPolicy.EXPLICIT
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        await nc.close()
