"""Billing's composition root: ``run(settings, stop)`` and the process entry point.

Build order: runtime (migrations, engine, NATS, health, /metrics) → metrics →
price book → handler → durable consumer → pull loop. Shutdown happens in
reverse when ``stop`` is set: the loop finishes its in-flight message, NATS
drains, the engine is disposed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from gateway_common import runtime, subjects

from .config import BillingSettings
from .handlers import UsageHandler
from .metrics import BillingMetrics
from .pricing import PriceBook

__all__ = ["MIGRATIONS_DIR", "main", "run"]

#: services/billing/migrations (the package lives in services/billing/src/billing).
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


async def run(settings: BillingSettings, stop: asyncio.Event) -> None:
    """Bill usage events until ``stop`` is set, then shut down cleanly."""
    prices = PriceBook(settings.catalog_path)  # before connecting: no prices, no billing
    async with runtime.open_runtime(
        settings, service="billing", migrations_dir=MIGRATIONS_DIR
    ) as rt:
        handler = UsageHandler(
            sessions=rt.sessions, prices=prices, metrics=BillingMetrics.register(rt.registry)
        )
        await runtime.ensure_pull_consumer(
            rt.js,
            stream=subjects.USAGE_STREAM,
            durable=subjects.BILLING_DURABLE,
            filter_subject=subjects.USAGE_RECORDED,
        )
        sub = await rt.js.pull_subscribe_bind(
            subjects.BILLING_DURABLE, stream=subjects.USAGE_STREAM
        )
        await runtime.pull_loop(sub, handler, stop=stop, batch_size=settings.batch_size)


def main(argv: Sequence[str]) -> int:
    """``python -m billing [serve|migrate]``."""
    return runtime.command_line(
        argv,
        service="billing",
        settings_factory=BillingSettings,
        migrations_dir=MIGRATIONS_DIR,
        run=run,
    )
