"""``ConsumerMetrics`` against a real nats-server: lag gauges and redeliveries as they happen.

A durable consumer of USAGE is fed three events; ``pull_loop`` naks the first
delivery of one of them. The redelivery is counted once (by the consumer's
name), and ``watch`` reports the consumer's pending and ack-pending messages
from JetStream's own consumer info.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from gateway_common import subjects
from gateway_common.metrics import ConsumerMetrics
from gateway_common.nats import ensure_streams
from gateway_common.runtime import ensure_pull_consumer, pull_loop
from gateway_common.testing import nats_server, wait_for


async def test_lag_and_redeliveries_of_a_durable_consumer(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    labels = {"stream": subjects.USAGE_STREAM, "consumer": subjects.BILLING_DURABLE}

    def sample(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(name, extra or labels)

    with nats_server(tmp_path) as url:
        nc = await nats.connect(url)
        watcher: asyncio.Task[None] | None = None
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            await ensure_pull_consumer(
                js,
                stream=subjects.USAGE_STREAM,
                durable=subjects.BILLING_DURABLE,
                filter_subject=subjects.USAGE_RECORDED,
            )
            for n in range(3):
                await js.publish(subjects.USAGE_RECORDED, f"e{n}".encode())
            watcher = asyncio.create_task(
                metrics.watch(js, [subjects.USAGE_STREAM], interval_s=0.1)
            )

            async def lag_seen() -> bool | None:
                return sample("switchyard_jetstream_consumer_pending") == 3 or None

            await wait_for(lag_seen, timeout_s=10)
            assert (
                sample("switchyard_jetstream_redeliveries_total", consumer=subjects.BILLING_DURABLE)
                == 0
            )

            acked: list[bytes] = []
            stop = asyncio.Event()

            async def handle(msg: Msg) -> None:
                if msg.data == b"e1" and msg.metadata.num_delivered == 1:
                    await msg.nak()  # redelivered at once
                    return
                await msg.ack()
                acked.append(msg.data)
                if len(acked) == 3:
                    stop.set()

            sub = await js.pull_subscribe_bind(
                subjects.BILLING_DURABLE, stream=subjects.USAGE_STREAM
            )
            await asyncio.wait_for(
                pull_loop(
                    sub, handle, stop=stop, batch_size=10, fetch_timeout_s=0.2, metrics=metrics
                ),
                timeout=20,
            )
            assert sorted(acked) == [b"e0", b"e1", b"e2"]
            assert (
                sample("switchyard_jetstream_redeliveries_total", consumer=subjects.BILLING_DURABLE)
                == 1
            )

            async def caught_up() -> bool | None:
                pending = sample("switchyard_jetstream_consumer_pending")
                ack_pending = sample("switchyard_jetstream_consumer_ack_pending")
                return (pending, ack_pending) == (0, 0) or None

            await wait_for(caught_up, timeout_s=10)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await nc.close()
