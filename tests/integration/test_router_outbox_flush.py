"""SIGTERM flushes the router's usage outbox: a real router process and nats-server.

The router starts on a nats-server of its own, which is then stopped; usage events
are put in the router's outbox file (as spooled calls would have left them) while
NATS is down, and the router gets SIGTERM. NATS comes back during the shutdown:
the router's last replay (``ROUTER_USAGE_FLUSH_GRACE_S``) publishes every event
before the process exits 0, each exactly once in the stream by ``Nats-Msg-Id``,
and the outbox is empty. A router that just cancelled its replay task on SIGTERM
exits with the events still in the file (the base Deployment loses them with the
pod). No stack needed: nothing else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from grpc_health.v1 import health_pb2

from gateway_common import subjects
from gateway_common.testing import free_port, service_process
from router.failover import RouteInfo
from router.outbox import UsageOutbox
from router.providers.base import Usage
from router.usage import Payer, usage_event
from tests.integration.helpers import poll
from tests.integration.test_shutdown import health

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
NATS_SERVER = Path(sys.executable).parent / "nats-server"
EVENTS = 3


@contextlib.contextmanager
def nats_on(port: int, store: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``nats-server -js`` on ``port`` with ``store`` (restartable on both); stopped on exit."""
    proc = subprocess.Popen(
        [str(NATS_SERVER), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def accepting() -> bool | None:
            assert proc.poll() is None, f"nats-server exited with {proc.returncode}"
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            return None

        poll(accepting, timeout=10)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _seed(path: Path) -> list[str]:
    """Put ``EVENTS`` usage events in the outbox at ``path``; their event ids."""
    route = RouteInfo("fake", "fake/mock-chat", 1, "mock-chat", "mock-chat", 12.0)
    outbox = UsageOutbox(path)
    ids = []
    try:
        for n in range(EVENTS):
            payer = Payer(request_id=f"flush-{n}", project_id="p", api_key_id="k", byok=False)
            event = usage_event(
                payer, "chat.completions", route, Usage(prompt_tokens=n + 1), status="ok"
            )
            await outbox.put(event.event_id, event.to_bytes())
            ids.append(event.event_id)
    finally:
        outbox.close()
    return ids


async def _stream_msg_ids(url: str) -> list[str]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(subjects.USAGE_STREAM)
        ids: list[str] = []
        if not info.state.messages:
            return ids
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(subjects.USAGE_STREAM, seq)
            ids.append((msg.headers or {})["Nats-Msg-Id"])
        return ids
    finally:
        await nc.close()


async def _outbox_count(path: Path) -> int:
    outbox = UsageOutbox(path)
    try:
        return await outbox.count()
    finally:
        outbox.close()


def test_sigterm_replays_the_outbox_to_nats_before_the_router_exits(tmp_path: Path) -> None:
    nats_port, router_port = free_port(), free_port()
    url, store = f"nats://127.0.0.1:{nats_port}", tmp_path / "js"
    outbox = tmp_path / "outbox" / "router-outbox.db"
    env = {
        "PYTHONUNBUFFERED": "1",
        "NATS_URL": url,
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(router_port),
        "ROUTER_CATALOG_PATH": str(ROOT / "tests" / "integration" / "catalog.yaml"),
        "ROUTER_METRICS_PORT": "0",
        "ROUTER_USAGE_OUTBOX_PATH": str(outbox),
        "ROUTER_USAGE_ACK_TIMEOUT_S": "0.5",
        "ROUTER_SHUTDOWN_GRACE_S": "1",  # no call in flight: the flush has the rest
        "ROUTER_USAGE_FLUSH_GRACE_S": "30",
        **{k: v for k, v in os.environ.items() if k == "VIRTUAL_ENV"},
    }
    log = tmp_path / "router.log"
    addr = f"127.0.0.1:{router_port}"
    with contextlib.ExitStack() as stack:
        first_nats = stack.enter_context(nats_on(nats_port, store))
        router = stack.enter_context(service_process("router", env, log_path=log))
        poll(lambda: health(addr) == health_pb2.HealthCheckResponse.SERVING or None, timeout=30)
        first_nats.terminate()  # NATS goes away; the router keeps reconnecting
        first_nats.wait(timeout=10)
        ids = asyncio.run(_seed(outbox))  # what calls answered in the outage left behind

        router.send_signal(signal.SIGTERM)
        with nats_on(nats_port, store):  # NATS answers again during the shutdown
            assert router.wait(timeout=40) == 0, log.read_text()[-2000:]
            stream_ids = asyncio.run(_stream_msg_ids(url))
    assert sorted(stream_ids) == sorted(ids)  # every event, each exactly once
    assert asyncio.run(_outbox_count(outbox)) == 0
    assert "usage outbox flushed: no event left" in log.read_text()
