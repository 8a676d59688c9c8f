"""Microbench: the usage publish, one ack wait per event vs a batch per event-loop tick.

Issue 20 asked whether publishing the router's usage events in batches (all the
events of one tick published, then their acks awaited together) would save
CPU per event against today's ``js.publish`` per event (a request/reply that
awaits its own ack). Both keep the guarantee: each caller still waits for its
own event's ack, with the same ``Nats-Msg-Id``. This measures only the
publisher's process, against a real nats-server with JetStream on loopback:
``_EVENTS`` events per round, sequential and 8 producers at a time, rounds
alternating, CPU from ``/proc/self/stat``. Run it with
``python -m devtools.bench.usage_publish``; figures are recorded by hand in
docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
import uvloop
from nats.js.client import JetStreamContext

from devtools.ports import free_port

from .upstream_client import cpu_s

_EVENTS = 3000
_PRODUCERS = 8
_ROUNDS = 4
_SUBJECT = "bench.usage"
_DATA = b'{"event":"usage"}' * 20  # about the size of a usage event

Publish = Callable[[JetStreamContext, int], Awaitable[None]]


async def _one_ack_each(js: JetStreamContext, producers: int) -> None:
    """Today's shape: every producer awaits its own ``js.publish``."""

    async def produce(count: int) -> None:
        for _ in range(count):
            headers = {"Nats-Msg-Id": uuid.uuid4().hex}
            await js.publish(_SUBJECT, _DATA, timeout=5.0, headers=headers)

    await asyncio.gather(*(produce(_EVENTS // producers) for _ in range(producers)))


async def _batched(js: JetStreamContext, producers: int) -> None:
    """The candidate: one tick's events published together, their acks gathered."""
    for _ in range(_EVENTS // producers):
        acks = [
            await js.publish_async(_SUBJECT, _DATA, headers={"Nats-Msg-Id": uuid.uuid4().hex})
            for _ in range(producers)
        ]
        await asyncio.wait_for(asyncio.gather(*acks), timeout=5.0)


async def _cpu_us_per_event(js: JetStreamContext, publish: Publish, producers: int) -> float:
    before = cpu_s()
    await publish(js, producers)
    return (cpu_s() - before) * 1e6 / _EVENTS


async def _main(port: int) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=10)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=[_SUBJECT])
    variants: dict[str, Publish] = {"one ack wait each": _one_ack_each, "batched": _batched}
    results: dict[tuple[str, int], list[float]] = {}
    for publish in variants.values():
        await _cpu_us_per_event(js, publish, _PRODUCERS)  # warm-up
    for _ in range(_ROUNDS):
        for producers in (1, _PRODUCERS):
            for name, publish in variants.items():
                cost = await _cpu_us_per_event(js, publish, producers)
                results.setdefault((name, producers), []).append(cost)
    await nc.close()
    for (name, producers), costs in results.items():
        shown = ", ".join(f"{cost:.0f}" for cost in costs)
        median = statistics.median(costs)
        print(f"{name:18} producers {producers}: {shown} (median {median:.0f}) us/event")


def _wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Return once nats-server accepts connections on ``port``; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as store:
        server = subprocess.Popen(
            ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            uvloop.run(_main(port))  # the router's loop
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
