"""UsagePublisher against a real nats-server with JetStream (temp store, free ports)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import nats
import orjson
import pytest
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from gateway_common import nats as gw_nats
from gateway_common import subjects
from gateway_common.errors import ServiceUnavailable
from router.failover import RouteInfo
from router.metrics import RouterMetrics
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
        publisher = UsagePublisher(js, RouterMetrics(CollectorRegistry()), ack_timeout_s=0.5)
        with pytest.raises(ServiceUnavailable):
            await publisher.record(PAYER, "embeddings", ROUTE, Usage(prompt_tokens=1))
    finally:
        await nc.close()
