"""Micro-benchmark: billing's CPU per usage event, draining a burst from a real nats-server.

    .venv/bin/python services/billing/bench_ledger.py --backend sqlite
    .venv/bin/python services/billing/bench_ledger.py --backend postgresql --events 20000

Starts a nats-server (JetStream, temp store) and billing as its own process
(``python -m billing``) on a fresh SQLite file or a throwaway PostgreSQL
database, waits until billing is idle, then publishes ``--events`` usage
events (a few projects, keys and models; 1 % of them published twice under
another message id, as after a crash between commit and ack) and waits until
the durable consumer has nothing pending or unacked. Billing's CPU is
``utime + stime`` of its process from ``/proc/<pid>/stat``, read when it is
idle before the burst and again after the drain, so start-up is not charged.
The publisher runs in this process and is not counted. At the end the ledger
is checked: one entry per distinct event, spend equal to the exact sum.

Not a test: it takes tens of seconds and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import nats
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from billing.store.models import LedgerEntry, SpendTotal
from gateway_common import db, subjects
from gateway_common.events import TokenUsage, UsageRecorded
from gateway_common.nats import ensure_streams
from gateway_common.testing import nats_server, service_process, throwaway_postgres, wait_for

CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  chat-a:
    deployments: [{provider: fake, model: a}]
    prices: {input: "0.000000075", output: "0.0000003", cached_input: "0.0000000375"}
  chat-b:
    deployments: [{provider: fake, model: b}]
    prices: {input: "0.0000011", output: "0.0000044"}
"""
_PRICES = {
    "chat-a": (Decimal("0.000000075"), Decimal("0.0000003"), Decimal("0.0000000375")),
    "chat-b": (Decimal("0.0000011"), Decimal("0.0000044"), Decimal("0.0000011")),
}
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def make_events(count: int) -> tuple[list[UsageRecorded], Decimal]:
    """``count`` events over 4 projects, 16 keys and 2 models, and their exact total price."""
    events: list[UsageRecorded] = []
    total = Decimal(0)
    for n in range(count):
        model = "chat-a" if n % 3 else "chat-b"
        prompt, cached, completion = 200 + n % 97, (n % 5) * 20, 10 + n % 41
        events.append(
            UsageRecorded(
                request_id=f"req-{n}",
                project_id=f"proj-{n % 4}",
                api_key_id=f"key-{n % 16}",
                operation="chat.completions",
                model=model,
                provider="fake",
                deployment=f"fake/{model}",
                usage=TokenUsage(
                    prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion
                ),
            )
        )
        price_in, price_out, price_cached = _PRICES[model]
        total += (prompt - cached) * price_in + cached * price_cached + completion * price_out
    return events, total


async def publish(nats_url: str, events: list[UsageRecorded]) -> None:
    """Publish every event, and every 100th a second time under another message id."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(publish_async_max_pending=2000)
        for n, event in enumerate(events):
            data = event.to_bytes()
            await js.publish_async(
                subjects.USAGE_RECORDED, data, headers={"Nats-Msg-Id": event.event_id}
            )
            if n % 100 == 0:
                await js.publish_async(
                    subjects.USAGE_RECORDED, data, headers={"Nats-Msg-Id": f"again-{n}"}
                )
        await js.publish_async_completed()
    finally:
        await nc.close()


async def measure(nats_url: str, pid: int, events: list[UsageRecorded]) -> tuple[float, float]:
    """Billing's CPU seconds and the wall seconds to drain ``events`` once billing is idle."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)

        async def consumer_ready() -> bool | None:
            try:
                return bool(await js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE))
            except NotFoundError:
                return None

        await wait_for(consumer_ready, timeout_s=60)
        await wait_idle(pid)
        before, started = cpu_seconds(pid), time.monotonic()
        await publish(nats_url, events)

        async def drained() -> bool | None:
            info = await js.consumer_info(subjects.USAGE_STREAM, subjects.BILLING_DURABLE)
            done = info.num_pending == 0 and info.num_ack_pending == 0
            return True if done else None

        await wait_for(drained, timeout_s=1800, interval_s=0.1)
        return cpu_seconds(pid) - before, time.monotonic() - started
    finally:
        await nc.close()


async def wait_idle(pid: int, *, timeout_s: float = 60.0) -> None:
    """Return once ``pid`` used under 10 ms of CPU in half a second (start-up is over)."""
    deadline = time.monotonic() + timeout_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - last < 0.01:
            return
        last = now
    raise TimeoutError(f"billing (pid {pid}) did not go idle within {timeout_s} s")


async def check_ledger(url: str, events: list[UsageRecorded], total: Decimal) -> None:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(LedgerEntry))).scalar()
            spend = (await conn.execute(select(SpendTotal.amount))).scalars().all()
    finally:
        await engine.dispose()
    if count != len(events) or sum(spend, Decimal(0)) != total:
        raise SystemExit(f"ledger wrong: {count} entries, spend {sum(spend)} != {total}")


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'billing.db'}"
    else:
        with throwaway_postgres("switchyard_billing_bench") as url:
            yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--source",
        type=Path,
        help="run billing from this directory's packages (e.g. a copy of an older version)",
    )
    args = parser.parse_args()
    events, total = make_events(args.events)
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        workdir = Path(tmp)
        catalog = workdir / "catalog.yaml"
        catalog.write_text(CATALOG)
        with nats_server(workdir / "nats") as nats_url, database(args.backend, workdir) as url:
            env = {
                "NATS_URL": nats_url,
                "GATEWAY_DATABASE_URL": url,
                "GATEWAY_LOG_LEVEL": "WARNING",
                "BILLING_CATALOG_PATH": str(catalog),
                "BILLING_BATCH_SIZE": str(args.batch_size),
            }
            if args.source:
                env["PYTHONPATH"] = str(args.source.resolve())
            with service_process("billing", env, log_path=workdir / "billing.log") as proc:
                cpu_s, wall_s = asyncio.run(measure(nats_url, proc.pid, events))
            asyncio.run(check_ledger(url, events, total))
    published = len(events) + (len(events) + 99) // 100
    print(
        f"{args.backend}: {len(events)} events (+{published - len(events)} redelivered), "
        f"batch {args.batch_size}: billing CPU {cpu_s:.2f} s = "
        f"{cpu_s * 1000 / published:.3f} ms/message, drained in {wall_s:.1f} s "
        f"({published / wall_s:,.0f} messages/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
