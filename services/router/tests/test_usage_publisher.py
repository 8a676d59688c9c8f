"""UsagePublisher against a real nats-server with JetStream (temp store, free ports)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import nats
import nats.errors
import orjson
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from gateway_common import nats as gw_nats
from gateway_common import subjects
from gateway_common.errors import ServiceUnavailable
from router.failover import RouteInfo
from router.metrics import RouterMetrics
from router.outbox import UsageOutbox
from router.providers.base import Usage
from router.usage import Payer, UsagePublisher

NATS_SERVER = Path(sys.executable).parent / "nats-server"
ROUTE = RouteInfo("fake", "fake/mock-chat", 1, "mock-chat", "mock-chat", 12.0)
PAYER = Payer(
    request_id="req-1",
    project_id="proj-1",
    api_key_id="key-1",
    byok=True,
    budget_lease_id="lease-1",
    endpoint="support-bot",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    port, monitor = _free_port(), _free_port()
    args = [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)]
    proc = subprocess.Popen([*args, "-js", "-sd", str(tmp_path / "js")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{monitor}/varz", timeout=0.5).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url)
    context = nc.jetstream()
    await gw_nats.ensure_streams(context)
    yield context
    await nc.close()


@pytest.mark.timeout(20)
async def test_publishes_one_acknowledged_event(
    js: JetStreamContext, metrics: RouterMetrics
) -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15, cached_tokens=2)
    published = await UsagePublisher(js, metrics).record(PAYER, "chat.completions", ROUTE, usage)

    sub = await js.pull_subscribe(subjects.USAGE_RECORDED, durable="router-test")
    [msg] = await sub.fetch(1, timeout=5)
    event = orjson.loads(msg.data)
    assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == event["event_id"]
    assert event["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cached_tokens": 2,
        "reasoning_tokens": 0,
        "cache_write_tokens": 0,
    }
    assert (event["model"], event["provider"], event["deployment"]) == (
        "mock-chat",
        "fake",
        "fake/mock-chat",
    )
    assert (event["request_id"], event["project_id"], event["api_key_id"]) == (
        "req-1",
        "proj-1",
        "key-1",
    )
    assert event["byok"] is True and event["status"] == "ok"
    assert event["operation"] == "chat.completions"
    assert (event["budget_lease_id"], event["endpoint"]) == ("lease-1", "support-bot")
    assert published is not None and published.to_bytes() == msg.data  # what it returns is sent


@pytest.mark.timeout(20)
async def test_unknown_usage_publishes_nothing_and_is_counted(
    js: JetStreamContext, metrics: RouterMetrics, registry: CollectorRegistry
) -> None:
    published = await UsagePublisher(js, metrics).record(
        PAYER, "chat.completions", ROUTE, None, status="cancelled"
    )
    assert published is None
    info = await js.stream_info(subjects.USAGE_STREAM)
    assert info.state.messages == 0
    assert (
        registry.get_sample_value(
            "switchyard_router_usage_unrecorded_total", {"reason": "cancelled"}
        )
        == 1
    )


@pytest.mark.timeout(20)
async def test_unacknowledged_publish_is_a_service_error(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()  # no stream declared: nobody acknowledges
        publisher = UsagePublisher(
            js, RouterMetrics(CollectorRegistry()), ack_timeout_s=0.5, retry_window_s=0.5
        )
        with pytest.raises(ServiceUnavailable):
            await publisher.record(PAYER, "embeddings", ROUTE, Usage(prompt_tokens=1))
    finally:
        await nc.close()


class _AckLost:
    """A JetStream context whose first publish reaches the stream but loses its ack."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js, self.calls = js, 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        ack = await self.js.publish(*args, **kwargs)
        if self.calls == 1:
            raise nats.errors.TimeoutError
        return ack


async def _stream_msg_ids(js: JetStreamContext) -> list[str]:
    info = await js.stream_info(subjects.USAGE_STREAM)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(subjects.USAGE_STREAM, seq)
        ids.append((msg.headers or {})["Nats-Msg-Id"])
    return ids


@pytest.mark.timeout(20)
async def test_lost_ack_is_retried_with_the_same_msg_id_and_stored_once(
    js: JetStreamContext, metrics: RouterMetrics, registry: CollectorRegistry
) -> None:
    flaky = _AckLost(js)
    publisher = UsagePublisher(cast(JetStreamContext, flaky), metrics, retry_window_s=5)
    event = await publisher.record(PAYER, "chat.completions", ROUTE, Usage(prompt_tokens=3))
    assert event is not None and flaky.calls == 2
    assert await _stream_msg_ids(js) == [event.event_id]
    assert registry.get_sample_value("switchyard_router_usage_publish_retries_total") == 1


@pytest.mark.timeout(20)
async def test_a_cancelled_call_is_republished_with_its_event_id_and_kept_once(
    js: JetStreamContext, metrics: RouterMetrics
) -> None:
    flaky = _AckLost(js)
    publisher = UsagePublisher(cast(JetStreamContext, flaky), metrics, retry_window_s=5)
    usage = Usage(prompt_tokens=4, completion_tokens=2, total_tokens=6)
    published = await publisher.record(PAYER, "chat.completions", ROUTE, usage, status="cancelled")
    assert published is not None and flaky.calls == 2
    assert await _stream_msg_ids(js) == [published.event_id]
    msg = await js.get_msg(
        subjects.USAGE_STREAM, (await js.stream_info(subjects.USAGE_STREAM)).state.last_seq
    )
    assert orjson.loads(msg.data)["status"] == "cancelled"


@pytest.mark.timeout(30)
async def test_unreachable_stream_spools_to_the_outbox_and_replays_once(
    nats_url: str, tmp_path: Path, metrics: RouterMetrics, registry: CollectorRegistry
) -> None:
    nc = await nats.connect(nats_url)
    outbox = UsageOutbox(tmp_path / "outbox.db")
    try:
        js = nc.jetstream()  # no stream yet: no publish is acknowledged
        publisher = UsagePublisher(
            js, metrics, ack_timeout_s=0.2, retry_window_s=0.3, outbox=outbox
        )
        first = await publisher.record(PAYER, "chat.completions", ROUTE, Usage(prompt_tokens=1))
        retries = registry.get_sample_value("switchyard_router_usage_publish_retries_total")
        second = await publisher.record(PAYER, "chat.completions", ROUTE, Usage(prompt_tokens=2))
        assert first is not None and second is not None  # answered: kept, not refused
        # In the outage the second went to the outbox at once, without retrying.
        assert registry.get_sample_value("switchyard_router_usage_publish_retries_total") == retries
        assert await outbox.count() == 2
        await outbox.put(first.event_id, first.to_bytes())  # kept once
        assert await outbox.count() == 2

        await gw_nats.ensure_streams(js)  # NATS answers again
        replay = asyncio.create_task(publisher.replay_forever())
        try:
            deadline = time.monotonic() + 15
            while await outbox.count():
                assert time.monotonic() < deadline, "outbox not replayed"
                await asyncio.sleep(0.05)
            assert await _stream_msg_ids(js) == [first.event_id, second.event_id]
            # A replay of an event the stream holds (its ack was lost) is dropped there.
            await outbox.put(first.event_id, first.to_bytes())
            while await outbox.count():
                assert time.monotonic() < deadline, "outbox not replayed"
                await asyncio.sleep(0.05)
            assert await _stream_msg_ids(js) == [first.event_id, second.event_id]
        finally:
            replay.cancel()
        assert (
            registry.get_sample_value("switchyard_router_usage_outbox_total", {"event": "replayed"})
            == 3
        )
    finally:
        outbox.close()
        await nc.close()


@pytest.fixture
async def unacked_js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """JetStream with no stream declared yet: no publish is acknowledged, as when NATS is down."""
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    await nc.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[UsageOutbox]:
    box = UsageOutbox(tmp_path / "outbox.db")
    yield box
    box.close()


def _spooling(js: JetStreamContext, outbox: UsageOutbox, metrics: RouterMetrics) -> UsagePublisher:
    """A publisher that gives up on an ack quickly and spools, with its replay task running."""
    publisher = UsagePublisher(js, metrics, ack_timeout_s=0.2, retry_window_s=0.3, outbox=outbox)
    publisher.start_replay()
    return publisher


@pytest.mark.timeout(30)
async def test_flush_replays_the_outbox_before_the_replay_task_ends(
    unacked_js: JetStreamContext, outbox: UsageOutbox, metrics: RouterMetrics
) -> None:
    publisher = _spooling(unacked_js, outbox, metrics)
    first = await publisher.record(PAYER, "chat.completions", ROUTE, Usage(prompt_tokens=1))
    second = await publisher.record(PAYER, "chat.completions", ROUTE, Usage(prompt_tokens=2))
    assert first is not None and second is not None
    assert await outbox.count() == 2
    # SIGTERM: the flush starts while NATS still refuses, and NATS answers during it.
    flush = asyncio.create_task(publisher.flush(timeout_s=15))
    await gw_nats.ensure_streams(unacked_js)
    assert await flush == 0
    assert await outbox.count() == 0
    assert await _stream_msg_ids(unacked_js) == [first.event_id, second.event_id]
    await publisher.aclose()  # the replay task has ended: nothing to cancel


@pytest.mark.timeout(30)
async def test_events_nats_never_took_stay_in_the_file_for_the_next_router(
    unacked_js: JetStreamContext, outbox: UsageOutbox, metrics: RouterMetrics
) -> None:
    publisher = _spooling(unacked_js, outbox, metrics)
    events = [
        await publisher.record(PAYER, "embeddings", ROUTE, Usage(prompt_tokens=n))
        for n in (1, 2, 3)
    ]
    assert await publisher.flush(timeout_s=0.5) == 3  # NATS never answered: bounded, kept
    outbox.close()

    # The container restarts in the same pod: a new router on the same file replays them.
    await gw_nats.ensure_streams(unacked_js)
    reopened = UsageOutbox(outbox.path)
    try:
        again = UsagePublisher(unacked_js, RouterMetrics(CollectorRegistry()), outbox=reopened)
        again.start_replay()
        assert await again.flush(timeout_s=15) == 0
    finally:
        reopened.close()
    assert await _stream_msg_ids(unacked_js) == [e.event_id for e in events if e is not None]
