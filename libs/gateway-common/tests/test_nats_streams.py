"""``ensure_streams`` against a real nats-server: retention by age, applied to old streams too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js.api import StreamConfig

from gateway_common import nats as gw_nats
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


async def test_close_after_nats_went_away_does_not_raise(tmp_path: Path) -> None:
    """A service stopped during a NATS outage exits cleanly (``drain`` would raise)."""
    with nats_server(tmp_path) as url:
        nc = await gw_nats.connect(url, name="test")
    # The server is gone: the client is reconnecting.
    deadline = asyncio.get_running_loop().time() + 10
    while nc.is_connected:
        assert asyncio.get_running_loop().time() < deadline, "still connected"
        await asyncio.sleep(0.02)
    with pytest.raises(nats.errors.ConnectionReconnectingError):
        await nc.drain()
    await gw_nats.close(nc)
    assert nc.is_closed


async def test_close_drains_a_connected_client(tmp_path: Path) -> None:
    with nats_server(tmp_path) as url:
        nc = await gw_nats.connect(url, name="test")
        await gw_nats.close(nc)
        assert nc.is_closed
