"""``ensure_streams`` against a real nats-server: retention by age, applied to old streams too."""

from __future__ import annotations

from pathlib import Path

import nats
from nats.js.api import StreamConfig

from gateway_common import subjects
from gateway_common.nats import (
    TRANSCRIPTS_MAX_AGE_S,
    USAGE_MAX_AGE_S,
    ensure_streams,
)
from gateway_common.testing import nats_server


async def test_streams_are_created_with_retention_by_age_only(tmp_path: Path) -> None:
    with nats_server(tmp_path) as url:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            usage = (await js.stream_info(subjects.USAGE_STREAM)).config
            transcripts = (await js.stream_info(subjects.TRANSCRIPTS_STREAM)).config
        finally:
            await nc.close()
    assert usage.max_age == USAGE_MAX_AGE_S == 7 * 86_400
    assert transcripts.max_age == TRANSCRIPTS_MAX_AGE_S == 3 * 86_400
    for config in (usage, transcripts):
        assert config.duplicate_window == 120
        assert config.max_msgs in (None, -1) and config.max_bytes in (None, -1)


async def test_a_stream_made_without_retention_gets_it_and_keeps_its_events(
    tmp_path: Path,
) -> None:
    with nats_server(tmp_path) as url:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(name=subjects.USAGE_STREAM, subjects=subjects.USAGE_SUBJECTS)
            )
            await js.publish(subjects.USAGE_RECORDED, b"{}", headers={"Nats-Msg-Id": "e1"})
            await ensure_streams(js)
            info = await js.stream_info(subjects.USAGE_STREAM)
        finally:
            await nc.close()
    assert info.config.max_age == USAGE_MAX_AGE_S
    assert info.state.messages == 1
