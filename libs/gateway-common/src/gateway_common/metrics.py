"""Metric families every service shares: database pool, JetStream consumers, bounded labels.

    switchyard_db_pool_size{service}                gauge: connections the pool keeps
    switchyard_db_pool_checked_out{service}         gauge: connections in use now
    switchyard_db_pool_overflow{service}            gauge: connections beyond the pool size
    switchyard_jetstream_consumer_pending{stream,consumer}      gauge: messages not yet delivered
    switchyard_jetstream_consumer_ack_pending{stream,consumer}  gauge: delivered, not yet acked
    switchyard_jetstream_consumer_redelivered{stream,consumer}  gauge: delivered more than once
        and not yet acked (the server's count)
    switchyard_jetstream_redeliveries_total{consumer}           counter: messages this
        process fetched that had been delivered before

The pool gauges are read at scrape time (``DbPoolCollector``); the consumer
gauges are refreshed by ``ConsumerMetrics.watch`` (JetStream consumer info is a
NATS request, which a scrape thread cannot make). Label values are stream and
durable names from ``gateway_common.subjects`` and service names: bounded.
``BoundedLabel`` caps a label whose values come from outside (model names).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the router has no database: importing this must not pull in sqlalchemy
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["BoundedLabel", "ConsumerMetrics", "DbPoolCollector"]

log = logging.getLogger(__name__)


class DbPoolCollector(Collector):
    """The pool gauges of one engine, read when Prometheus scrapes."""

    def __init__(self, engine: AsyncEngine, *, service: str) -> None:
        self._engine = engine
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Size, checked-out and overflow connections (0 for pools that do not count them)."""
        from sqlalchemy.pool import QueuePool  # already loaded: an engine exists

        pool = self._engine.sync_engine.pool
        size = checked_out = overflow = 0
        if isinstance(pool, QueuePool):  # others (SQLite's file pools) keep no counts
            size, checked_out, overflow = pool.size(), pool.checkedout(), max(pool.overflow(), 0)
        values = {
            "switchyard_db_pool_size": (size, "Connections the database pool keeps open."),
            "switchyard_db_pool_checked_out": (checked_out, "Database connections in use now."),
            "switchyard_db_pool_overflow": (
                overflow,
                "Database connections open beyond the pool size.",
            ),
        }
        for name, (value, documentation) in values.items():
            family = GaugeMetricFamily(name, documentation, labels=["service"])
            family.add_metric([self._service], value)
            yield family


class ConsumerMetrics:
    """JetStream consumer lag (polled) and redeliveries (counted as messages are fetched)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["stream", "consumer"]
        self.pending = Gauge(
            "switchyard_jetstream_consumer_pending",
            "Messages of the stream the durable consumer has not delivered yet (its lag).",
            labels,
            registry=registry,
        )
        self.ack_pending = Gauge(
            "switchyard_jetstream_consumer_ack_pending",
            "Messages delivered to the durable consumer and not acked yet.",
            labels,
            registry=registry,
        )
        self.redelivered = Gauge(
            "switchyard_jetstream_consumer_redelivered",
            "Messages delivered more than once and not acked yet (server count).",
            labels,
            registry=registry,
        )
        self.redeliveries = Counter(
            "switchyard_jetstream_redeliveries",
            "Messages this process fetched that had been delivered before (num_delivered > 1).",
            ["consumer"],
            registry=registry,
        )

    def observe_batch(self, msgs: Sequence[Msg]) -> None:
        """Count the redeliveries in a fetched batch."""
        for msg in msgs:
            meta = msg.metadata
            if meta.num_delivered > 1:
                self.redeliveries.labels(meta.consumer or "unknown").inc()

    async def watch(
        self, js: JetStreamContext, streams: Iterable[str], *, interval_s: float = 5.0
    ) -> None:
        """Refresh the lag gauges of every durable consumer of ``streams``, forever.

        A stream or server that does not answer keeps the last values (logged at
        debug): the gauges are for dashboards, not for correctness.
        """
        names = tuple(streams)
        while True:
            for stream in names:
                try:
                    consumers = await js.consumers_info(stream)
                except (nats.errors.Error, TimeoutError) as exc:
                    log.debug("consumer info of %s unavailable: %s", stream, exc)
                    continue
                for info in consumers:
                    name = info.name or "unknown"
                    self.pending.labels(stream, name).set(info.num_pending or 0)
                    self.ack_pending.labels(stream, name).set(info.num_ack_pending or 0)
                    self.redelivered.labels(stream, name).set(info.num_redelivered or 0)
                    self.redeliveries.labels(name)  # exported at 0 before the first one
            await asyncio.sleep(interval_s)


class BoundedLabel:
    """A label whose values come from outside, capped: the first ``limit`` values, then ``other``.

    Model names reach the router from requests and credentials; the catalog
    bounds them in practice, and this bounds them in every case.
    """

    def __init__(self, limit: int = 200) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        """``value`` if it is one of the first ``limit`` distinct values, else ``other``."""
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return "other"
