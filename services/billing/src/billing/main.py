"""Billing's composition root: ``run(settings, stop)`` and the process entry point.

Build order: runtime (migrations, engine, NATS, health, /metrics) → metrics →
price book → usage handler → request API (``billing.*`` subjects) → lease
reaper → durable consumer → pull loop. Shutdown happens in reverse when
``stop`` is set: the loop finishes its in-flight batch, the reaper stops,
the API answers what it has started, NATS drains, the engine is disposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from gateway_common import runtime, subjects

from . import reconcile
from .api import BillingApi
from .config import BillingSettings
from .handlers import UsageHandler
from .metrics import BillingMetrics
from .pricing import PriceBook
from .store.budgets import LeasePolicy, reap_leases

__all__ = ["MIGRATIONS_DIR", "main", "run"]

log = logging.getLogger(__name__)

#: services/billing/migrations (the package lives in services/billing/src/billing).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


async def run(settings: BillingSettings, stop: asyncio.Event) -> None:
    """Bill usage events and answer billing's requests until ``stop`` is set, then shut down."""
    prices = PriceBook(settings.catalog_path)  # before connecting: no prices, no billing
    policy = LeasePolicy(
        ttl=timedelta(seconds=settings.lease_ttl_s),
        settle=timedelta(seconds=settings.lease_settle_s),
    )
    async with runtime.open_runtime(
        settings, service="billing", migrations_dir=MIGRATIONS_DIR
    ) as rt:
        metrics = BillingMetrics.register(rt.registry)
        handler = UsageHandler(sessions=rt.sessions, prices=prices, metrics=metrics)
        api = BillingApi(sessions=rt.sessions, policy=policy, metrics=metrics)
        await api.start(rt.nc)
        reaper = asyncio.create_task(
            _reap_until(stop, rt.sessions, policy, metrics, settings.reaper_interval_s)
        )
        try:
            await runtime.ensure_pull_consumer(
                rt.js,
                stream=subjects.USAGE_STREAM,
                durable=subjects.BILLING_DURABLE,
                filter_subject=subjects.USAGE_RECORDED,
                ack_wait_s=settings.ack_wait_s,
            )
            sub = await rt.js.pull_subscribe_bind(
                subjects.BILLING_DURABLE, stream=subjects.USAGE_STREAM
            )
            await rt.serving()  # the request API and the usage consumer are subscribed
            await runtime.pull_batches(
                sub,
                handler.handle_batch,
                stop=stop,
                batch_size=settings.batch_size,
                linger_s=settings.batch_linger_s,
                metrics=rt.consumer_metrics,
            )
        finally:
            stop.set()
            await reaper
            await api.stop()


async def _reap_until(
    stop: asyncio.Event,
    sessions: async_sessionmaker[AsyncSession],
    policy: LeasePolicy,
    metrics: BillingMetrics,
    interval_s: float,
) -> None:
    """Close abandoned leases every ``interval_s`` until ``stop``; a failed pass is retried."""
    while not stop.is_set():
        try:
            async with sessions() as session:
                reaped = await reap_leases(session=session, policy=policy, now=datetime.now(UTC))
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            log.warning("lease reaper pass failed, retrying next interval: %s", exc)
        else:
            if reaped:
                metrics.leases_reaped.inc(reaped)
                log.info("reaped %d expired budget leases", reaped)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def main(argv: Sequence[str]) -> int:
    """``python -m billing [serve|migrate]`` or ``python -m billing reconcile --from --to``."""
    if argv[:1] == ["reconcile"]:
        return reconcile.command(argv[1:])
    return runtime.command_line(
        argv,
        service="billing",
        settings_factory=BillingSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
