"""Memory benchmark: billing's ledger writes on SQLite with batches of every size; RSS over time.

    .venv/bin/python services/billing/bench_ledger_memory.py
    .venv/bin/python services/billing/bench_ledger_memory.py --cached-statements 128

Writes ``--events`` usage events through ``repo.record_usages`` into a fresh
SQLite ledger, in batches whose sizes are drawn uniformly from 1 to 256 (what
billing fetches when it falls behind and catches up), and prints this
process's resident memory every 25,000 events. A multi-row INSERT is a new
statement text for every batch size; ``--cached-statements`` sets how many
prepared statements sqlite3 keeps per connection (the engine's setting by
default; sqlite3's own default is 128). The 1,000,000-request soak of
docs/benchmarks.md is where this mattered: see its notes.

Not a test: it takes a minute or two and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from pathlib import Path

from sqlalchemy.ext.asyncio import create_async_engine

from billing.pricing import PriceBook
from billing.store import repo
from billing.store.repo import PricedUsage
from gateway_common import db
from gateway_common.events import TokenUsage, UsageRecorded

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_CATALOG = """\
version: 1
providers:
  fake: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
models:
  chat-a:
    deployments: [{provider: fake, model: a}]
    prices: {input: "0.000000075", output: "0.0000003"}
"""


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def run(events: int, cached_statements: int | None, workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'billing.db'}"
    db.migrate(url=url, migrations_dir=_MIGRATIONS, service="billing")
    (workdir / "catalog.yaml").write_text(_CATALOG)
    prices = PriceBook(workdir / "catalog.yaml")
    engine = (
        db.create_engine(url)
        if cached_statements is None
        else create_async_engine(
            url, connect_args={"timeout": 30, "cached_statements": cached_statements}
        )
    )
    sessions = db.make_sessionmaker(engine)
    rng = random.Random(1)
    written, report = 0, 25_000
    try:
        while written < events:
            usages = []
            for n in range(written, written + rng.randint(1, 256)):
                event = UsageRecorded(
                    request_id=f"req-{n}",
                    project_id="proj",
                    api_key_id="key",
                    operation="chat.completions",
                    model="chat-a",
                    provider="fake",
                    deployment="fake/a",
                    usage=TokenUsage(prompt_tokens=20 + n % 50, completion_tokens=9),
                )
                usages.append(PricedUsage(event, prices.price(event)))
            async with sessions() as session:
                await repo.record_usages(session=session, usages=usages)
            written += len(usages)
            if written >= report:
                print(f"{written:>9,} events: RSS {rss_mib():6.1f} MiB", flush=True)
                report += 25_000
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--cached-statements", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ledger-memory-") as tmp:
        asyncio.run(run(args.events, args.cached_statements, Path(tmp)))


if __name__ == "__main__":
    main()
