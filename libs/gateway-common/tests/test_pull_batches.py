"""``pull_batches`` rides out a consumer without a leader (a JetStream node restarting).

On a cluster, a fetch while the consumer's leader is being elected is answered
503 (nats-py raises ``ServiceUnavailableError``); the loop must wait and fetch
again instead of ending the service (billing exited on it in drill d04). The
subscription is a stand-in with the one method the loop calls; a real one on a
cluster is d04's subject.
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from gateway_common.runtime import pull_batches


class _Sub:
    """``fetch`` raises each of ``failures`` in turn, then returns ``["m"]`` and sets ``stop``."""

    def __init__(self, failures: list[Exception], stop: asyncio.Event) -> None:
        self.failures = failures
        self.stop = stop
        self.unsubscribed = False

    async def fetch(self, batch: int, timeout: float) -> list[str]:  # noqa: ASYNC109 (nats-py)
        if self.failures:
            raise self.failures.pop(0)
        self.stop.set()
        return ["m"]

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


async def test_fetch_errors_of_a_restarting_cluster_are_retried() -> None:
    stop = asyncio.Event()
    failures: list[Exception] = [
        nats.js.errors.ServiceUnavailableError(),
        nats.errors.NoRespondersError(),
        nats.errors.TimeoutError(),
    ]
    sub = _Sub(failures, stop)
    batches: list[list[Any]] = []

    async def handle(msgs: list[Any]) -> None:
        batches.append(msgs)

    await asyncio.wait_for(
        pull_batches(sub, handle, stop=stop, batch_size=10, fetch_timeout_s=0.01),  # type: ignore[arg-type]
        timeout=5,
    )
    assert batches == [["m"]]
    assert sub.unsubscribed


async def test_a_closed_connection_ends_the_loop() -> None:
    stop = asyncio.Event()
    sub = _Sub([nats.errors.ConnectionClosedError()], stop)

    async def handle(msgs: list[Any]) -> None:
        raise AssertionError("no batch expected")

    with pytest.raises(nats.errors.ConnectionClosedError):
        await pull_batches(sub, handle, stop=stop, batch_size=10, fetch_timeout_s=0.01)  # type: ignore[arg-type]
    assert sub.unsubscribed
